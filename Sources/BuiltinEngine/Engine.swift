/// The built-in engine's version, reported by its server.
public let engineVersion = "0.1.0"
