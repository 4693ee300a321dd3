/// A column of an e-commerce event, in CSV header order.
public enum EventField: Int, CaseIterable, Sendable {
    case eventID, userID, productID, eventType, price, eventTimestamp

    /// The CSV column name, which is also the line-protocol key and the table column.
    public var name: String { key.description }

    /// The same name as a `StaticString`, for the byte writer.
    public var key: StaticString {
        switch self {
        case .eventID: "event_id"
        case .userID: "user_id"
        case .productID: "product_id"
        case .eventType: "event_type"
        case .price: "price"
        case .eventTimestamp: "event_timestamp"
        }
    }

    public init?(name: String) {
        guard let field = EventField.allCases.first(where: { $0.name == name }) else { return nil }
        self = field
    }

    /// The CSV header line, without a line terminator.
    public static let csvHeader = allCases.map(\.name).joined(separator: ",")
}
