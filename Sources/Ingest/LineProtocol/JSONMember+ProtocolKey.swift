extension JSONMember {
    /// The `ProtocolKey` raw value the scanner classified the key as, or -1: lets `load` map
    /// the e-commerce columns (which are such keys) to their COPY column without hashing a key.
    @inline(__always)
    public var classifiedKey: Int { Int(protocolKey) }
}
