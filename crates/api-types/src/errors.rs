//! The one table of public error codes: every error the control API,
//! function routes and realtime sockets answer with names one of these,
//! with its HTTP status. (The S3 endpoint answers with S3's own codes in
//! its XML.) README's "Error codes" table says the same; a test holds the
//! two together.

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $meaning:literal;)*) => {
        /// A public error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in error bodies.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// When it is answered, for people.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest = "invalid_request", 400, "not valid HTTP/1.1, or a request the route cannot take";
    InvalidQuery = "invalid_query", 400, "a query parameter unknown, missing or out of range; a query that is not one";
    InvalidBody = "invalid_body", 400, "a request body that is not the JSON the route expects";
    InvalidJson = "invalid_json", 400, "a body that is not JSON";
    InvalidHeader = "invalid_header", 400, "a header that is not as the route expects (If-Match, Content-Range, ...)";
    InvalidName = "invalid_name", 400, "a project, function, store, collection, index, bucket or topic name that is not one";
    InvalidKey = "invalid_key", 400, "a key-value key or an object key that is not one";
    InvalidConfig = "invalid_config", 400, "a deploy setting that is not valid";
    InvalidComponent = "invalid_component", 400, "uploaded code the runtime refuses (not a component, no handler, an import wok does not provide)";
    InvalidDocument = "invalid_document", 400, "a document that is not a JSON object within the limits";
    InvalidBatch = "invalid_batch", 400, "a batch of writes that is not one";
    InvalidIndex = "invalid_index", 400, "an index declaration that is not one";
    UnindexedQuery = "unindexed_query", 400, "a query on a large collection that no index serves (the message names one)";
    InvalidEvent = "invalid_event", 400, "a message to publish that is not one";
    InvalidAccess = "invalid_access", 400, "an access rule that is not one";
    InvalidMessage = "invalid_message", 400, "a realtime message that is not one";
    IncompleteBody = "incomplete_body", 400, "a body shorter than announced, or cut off";
    BadDigest = "bad_digest", 400, "a body whose checksum is not the one announced";
    Unauthorized = "unauthorized", 401, "no credential, or one that is not valid";
    Forbidden = "forbidden", 403, "a valid credential that may not do this";
    NotFound = "not_found", 404, "no such route, version, key or index";
    ProjectNotFound = "project_not_found", 404, "no such project";
    FunctionNotFound = "function_not_found", 404, "no such function";
    KeyNotFound = "key_not_found", 404, "no such key-value entry";
    StoreNotFound = "store_not_found", 404, "no such key-value store (or it is empty)";
    DocumentNotFound = "document_not_found", 404, "no such document";
    CollectionNotFound = "collection_not_found", 404, "no such collection (or it is empty)";
    BucketNotFound = "bucket_not_found", 404, "no such bucket";
    ObjectNotFound = "object_not_found", 404, "no such object";
    UploadNotFound = "upload_not_found", 404, "no such multipart upload";
    TriggerNotFound = "trigger_not_found", 404, "no such trigger";
    InvocationNotFound = "invocation_not_found", 404, "no such asynchronous invocation";
    MethodNotAllowed = "method_not_allowed", 405, "a route that does not take this method";
    RequestTimeout = "request_timeout", 408, "a request body that arrived too slowly";
    ProjectExists = "project_exists", 409, "a project name in use, or used before";
    ProjectNotEmpty = "project_not_empty", 409, "a project that still has functions, data or app users";
    ProjectRequired = "project_required", 409, "the default project, which cannot be removed";
    DocumentExists = "document_exists", 409, "a document id in use";
    IndexExists = "index_exists", 409, "an index name in use";
    BucketExists = "bucket_exists", 409, "a bucket name in use";
    BucketNotEmpty = "bucket_not_empty", 409, "a bucket that still holds objects or uploads";
    NotANumber = "not_a_number", 409, "an increment of a value that is not a decimal integer";
    Overflow = "overflow", 409, "an increment whose sum does not fit in 64 bits";
    FunctionInUse = "function_in_use", 409, "a function other live functions run on (their base)";
    PreconditionFailed = "precondition_failed", 412, "If-Match or If-None-Match not met";
    PayloadTooLarge = "payload_too_large", 413, "a body over the route's or the function's limit";
    UriTooLong = "uri_too_long", 414, "a request line over 64 KiB";
    ContentTypeRefused = "content_type_refused", 415, "a content type the bucket does not take";
    RangeNotSatisfiable = "range_not_satisfiable", 416, "a range outside the object";
    IdempotencyKeyReused = "idempotency_key_reused", 422, "an Idempotency-Key used for another request";
    TooManyRequests = "too_many_requests", 429, "a function or a queue at its limit, or the server reading other large bodies (Retry-After says when to try again)";
    TooManySubscriptions = "too_many_subscriptions", 429, "a realtime connection at its limit of subscriptions";
    HeadersTooLarge = "headers_too_large", 431, "request headers over 64 KiB or 100 headers";
    InternalError = "internal_error", 500, "wok failed; the server log has details";
    FunctionTrap = "function_trap", 502, "the function trapped (a panic, an unreachable instruction)";
    FunctionOutOfMemory = "function_out_of_memory", 502, "the function needed more memory than its limit";
    FunctionStackOverflow = "function_stack_overflow", 502, "the function overflowed its stack";
    FunctionNoResponse = "function_no_response", 502, "the function ended without a response, or answered an error code";
    FunctionCrashed = "function_crashed", 502, "the function's process exited or was killed while it held the request";
    ClientDisconnected = "client_disconnected", 502, "the client left before the answer (in records; nobody is there to read it)";
    TooManyConnections = "too_many_connections", 503, "the server at its connection limit, every connection busy";
    StoreUnavailable = "store_unavailable", 503, "the database could not be reached: a write's outcome is unknown, read before retrying";
    FunctionTimeout = "function_timeout", 504, "the function ran past its timeout";
    InsufficientStorage = "insufficient_storage", 507, "the disk is full: writes are refused until there is room";
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// README's "Error codes" table: (code, status) per row.
    fn readme_table() -> Vec<(String, u16)> {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("reading README.md");
        let section = readme
            .split("\n## Error codes\n")
            .nth(1)
            .expect("README has an Error codes section");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                (
                    cells[0].trim_matches('`').to_owned(),
                    cells[1].parse().expect("a status"),
                )
            })
            .collect()
    }

    #[test]
    fn readme_lists_every_code_with_its_status_and_no_other() {
        let table: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|code| (code.as_str().to_owned(), code.status()))
            .collect();
        assert_eq!(readme_table(), table);
    }

    #[test]
    fn codes_are_snake_case_and_unique_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
                "{text}"
            );
            assert!((400..600).contains(&code.status()), "{text}");
        }
    }
}
