import Catalog
import Launchers
import ModelStore
import ModeldAPI

// What the schemas of the wire types say beyond what their decoding shows (``SchemaRecorder``): the values a
// string field takes, and descriptions where the name is not enough. Every field of a type is described from the
// type itself; these notes only add to it.

extension PullEvent.Kind: WireEnumeration {}
extension PullEvent.State: WireEnumeration {}

extension KeepAliveText: WireSchemaDescribed {
    static var wireSchema: JSONSchema {
        [
            "oneOf": [["type": "string", "pattern": "^(never|-1|[0-9]+|([0-9]+h)?([0-9]+m)?([0-9]+s)?)$"], ["type": "integer", "minimum": -1]],
            "description": "30s, 10m, 1h30m, plain seconds, or never (also -1)",
        ]
    }
}

extension StopSequences: WireSchemaDescribed {
    static var wireSchema: JSONSchema { ["oneOf": [["type": "string"], ["type": "array", "items": ["type": "string"]]]] }
}

extension JSONValue: WireSchemaDescribed {
    /// Any JSON value.
    static var wireSchema: JSONSchema { [:] }
}

extension KeyCreateRequest: WireDocumented {
    static var wireNotes: WireNotes { WireNotes(fields: ["scope": ["enum": ["inference", "admin"]]]) }
}

extension LocalVersionInfo: WireDocumented {
    static var wireNotes: WireNotes { WireNotes(fields: ["state": ["enum": VersionState.allCases.map(\.rawValue)]]) }
}

extension DaemonStatus: WireDocumented {
    static var wireNotes: WireNotes {
        WireNotes(fields: [
            "data_dir_bytes": ["description": "the sizes of the local versions the store records"],
            "free_bytes": ["description": "free bytes for an unprivileged user on the data directory's file system"],
            "total_bytes": ["description": "the size of the data directory's file system"],
            "runs": ["description": "runs by state, every state present", "required": RunState.allCases.map(\.rawValue)],
        ])
    }
}

extension StartRequest: WireDocumented {
    static var wireNotes: WireNotes {
        WireNotes(fields: [
            "engine": ["enum": EngineKind.allCases.map(\.rawValue)],
            "keep_alive": [
                "description": "unload after this long without requests: 30s, 10m, 1h30m, seconds, or never (the default for explicit starts)"
            ],
            "quantization": [
                "description":
                    "builtin and llamacpp: the weights' quantization (q4_k_m, q8_0, bf16...), one the catalog offers: the GGUF repository's file, or quantized on load (docs/quantization.md)"
            ],
        ])
    }
}

extension RunSummary: WireDocumented {
    static var wireNotes: WireNotes {
        WireNotes(fields: [
            "state": ["enum": RunState.allCases.map(\.rawValue)],
            "desired_state": ["enum": DesiredRunState.allCases.map(\.rawValue)],
            "keep_alive": ["minimum": 0, "description": "seconds without requests before the run is unloaded; absent: kept until stopped"],
            "on_demand": ["description": "started by the gateway for a request"],
            "last_used_at": ["description": "when its last request ended (loaded runs)"],
        ])
    }
}

extension AdoptRequest: WireDocumented {
    static var wireNotes: WireNotes { WireNotes(fields: ["kind": ["enum": ["hf-cache", "dir"]]]) }
}

/// The LLM API's requests name their run or model, and pass fields they do not list to the engine.
private var llmRequest: WireNotes {
    WireNotes(
        fields: [
            "run_id": ["description": "A run id or name; the run must be ready"],
            "model": ["description": "A run name, served name, catalog ref or repository id"],
        ],
        additionalProperties: true)
}

extension LLMGenerateRequest: WireDocumented {
    static var wireNotes: WireNotes { llmRequest }
}

extension LLMChatRequest: WireDocumented {
    static var wireNotes: WireNotes { llmRequest }
}

extension LLMStructuredRequest: WireDocumented {
    static var wireNotes: WireNotes {
        var notes = llmRequest
        notes.fields["schema"] = ["type": "object", "description": "A JSON Schema"]
        return notes
    }
}

extension TokenCountRequest: WireDocumented {
    static var wireNotes: WireNotes {
        var notes = llmRequest
        notes.additionalProperties = false
        return notes
    }
}

extension LLMStructuredReply: WireDocumented {
    static var wireNotes: WireNotes { WireNotes(fields: ["json": ["description": "text parsed as JSON; null when it does not parse"]]) }
}

extension UpstreamKind: WireEnumeration {}
extension RoutingStrategy: WireEnumeration {}

extension UpstreamInfo: WireDocumented {
    static var wireNotes: WireNotes {
        WireNotes(fields: [
            "state": ["enum": ["up", "cooling", "disabled", "removed"]],
            "api_key_set": ["description": "whether the variable or file named holds a key now; the key is never shown"],
        ])
    }
}
