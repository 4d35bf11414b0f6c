import Foundation
import ModelStore

/// `llama-server -m <file.gguf> --host 127.0.0.1 --port P --alias N --metrics [...]`
/// (docs/design/engine-launch.md, llama.cpp).
package struct LlamaCppContract: EngineContract {
    package init() {}

    package var kind: EngineKind { .llamacpp }
    package var readinessPath: String { "/health" }
    package var livenessPath: String { "/health" }
    package var installHint: String {
        "build it from llama.cpp (scripts/build-llamacpp.sh builds llama-server into .build/llama.cpp/bin) "
            + "or set the llama.cpp executable in the configuration"
    }

    package var commandLineRefusals: [String] { ["error: invalid argument: ", "error while handling argument "] }

    package func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (
        arguments: [String], environment: [String: String]
    ) {
        let options = spec.options
        var arguments = [
            "-m", try Self.modelFile(in: try requireModelPath(spec), named: options.modelFile), "--host", "127.0.0.1",
            "--port", String(port), "--alias", spec.servedName, "--metrics",
        ]
        if let length = options.maxContext { arguments += ["--ctx-size", String(length)] }
        if let parallel = options.parallel { arguments += ["--parallel", String(parallel)] }
        if let threads = options.threads { arguments += ["--threads", String(threads)] }
        if let layers = options.gpuLayers { arguments += ["--n-gpu-layers", String(layers)] }
        arguments += options.extraArguments
        var environment: [String: String] = [:]
        if let gpus = options.gpus { environment["CUDA_VISIBLE_DEVICES"] = gpus }
        return (arguments, environment)
    }

    /// The GGUF file llama-server loads from a snapshot: `name` when given, else its one model file (a model split
    /// in parts counts once, by its first part; vision projectors, `mmproj*`, are not models).
    /// - Parameter path: a snapshot directory, or a `.gguf` file itself.
    /// - Throws: ``LaunchError`` when there is no such file, none at all, or several to choose from.
    static func modelFile(in path: String, named name: String?) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw LaunchError(code: .invalidSpec, message: "the model's snapshot \(path) does not exist: pull the model again")
        }
        if !isDirectory.boolValue { return path }
        if let name {
            let parts = name.split(separator: "/")
            guard name.hasSuffix(".gguf"), !name.hasPrefix("/"), !parts.contains("..") else {
                throw LaunchError(
                    code: .invalidSpec, message: "model file \"\(name)\" must be a .gguf path inside the snapshot, such as model-Q4_K_M.gguf")
            }
            let file = "\(path.trimmingSlash)/\(name)"
            guard FileManager.default.fileExists(atPath: file) else {
                throw LaunchError(code: .invalidSpec, message: "the snapshot \(path) has no file \(name)")
            }
            return file
        }
        let files = (FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? [])
            .filter { $0.hasSuffix(".gguf") && !($0.split(separator: "/").last ?? "").hasPrefix("mmproj") }
            .filter { file in file.firstMatch(of: /-\d{5}-of-\d{5}\.gguf$/).map { $0.output.hasPrefix("-00001-") } ?? true }
            .sorted()
        guard !files.isEmpty else {
            throw LaunchError(
                code: .invalidSpec,
                message: "llama.cpp loads GGUF files and the snapshot \(path) has none: pull a GGUF repository "
                    + "(`modelctl pull OWNER/NAME-GGUF --include '*Q4_K_M.gguf'`)")
        }
        guard files.count == 1 else {
            throw LaunchError(
                code: .invalidSpec,
                message: "the snapshot holds \(files.count) GGUF models (\(files.joined(separator: ", "))): choose one with --model-file")
        }
        return "\(path.trimmingSlash)/\(files[0])"
    }
}
