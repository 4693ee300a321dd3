/// The default contract, `contracts/ecommerce_events.yaml`, built in so a tool run from any
/// folder has it (`DefaultContractTests` checks that the file and this copy are the same text).
extension Contract {
    public static let ecommerceEventsYAML = #"""
        # The e-commerce events: the default contract, used when no --contract (or INGEST_CONTRACT) is
        # given. Its rules are the ones docs/validation.md describes; the table is sql/postgres_setup.sql's.
        # The format: docs/contracts.md.
        version: 1
        table: public.ecommerce_events
        dead_letter_table: public.ecommerce_bad_records
        null_values: [""]
        columns:
          - name: event_id
            data_type: uuid
            constraints: [primary_key]
          - name: user_id
            data_type: integer
            constraints: [not_null]
            range: {min: 1, max: 2147483647}
          - name: product_id
            data_type: integer
            constraints: [not_null]
            range: {min: 1, max: 2147483647}
          - name: event_type
            data_type: text
            constraints: [not_null]
            accepted_values: {values: [view, purchase], case_sensitive: false}
          - name: price
            data_type: numeric(10,2)
            range: {greater_than: 0, less_than: 1000000}
          - name: event_timestamp
            data_type: timestamptz
            constraints: [not_null]
            max_future: 5m
        checks:
          - name: purchase_has_price
            when: {column: event_type, equals: purchase}
            require: {column: price, not_null: true}
            reason: required for a purchase
          - name: only_purchases_have_price
            when: {column: event_type, not_equals: purchase}
            require: {column: price, is_null: true}
            reason: "must be empty for {a event_type}"

        """#

    /// The e-commerce events contract: the default of every stage.
    public static let ecommerceEvents: Contract = {
        // The text above is checked by the tests; it always parses.
        try! Contract.parse(ecommerceEventsYAML, path: "contracts/ecommerce_events.yaml")
    }()

    /// The contract `--contract PATH` names, else `$INGEST_CONTRACT`, else the default.
    public static func resolve(path: String?, environment: [String: String]) throws(ContractError) -> Contract {
        if let path, !path.isEmpty { return try load(path: path) }
        if let path = environment[environmentVariable], !path.isEmpty { return try load(path: path) }
        return ecommerceEvents
    }
}
