//! Bitget's reply envelopes and the codes of its refusals, written where a reply is made
//! here rather than relayed (the gateway's own answers and refusals).

/// A request needs a credential it lacks (the gateway's token), as Bitget's 40001.
pub const CODE_UNAUTHORIZED: &str = "40001";
/// A body over the size allowed, as Bitget's 40017 (parameter error).
pub const CODE_TOO_LARGE: &str = "40017";
/// No such path, as Bitget's 40404.
pub const CODE_NOT_FOUND: &str = "40404";

/// A Bitget success envelope around `data` (JSON text).
pub fn envelope(request_time: u64, data: &str) -> String {
    format!(r#"{{"code":"00000","msg":"success","requestTime":{request_time},"data":{data}}}"#)
}

/// Bitget's own rate-limit reply, as the gateway sends it when it refuses locally.
pub fn too_many_requests(request_time: u64) -> String {
    format!(
        r#"{{"code":"429","msg":"Too Many Requests","requestTime":{request_time},"data":null}}"#
    )
}

/// A Bitget-style error reply for what the gateway itself refuses.
pub fn error_body(code: &str, msg: &str, request_time: u64) -> String {
    let msg = serde_json::to_string(msg).unwrap_or_else(|_| "\"\"".to_owned());
    format!(r#"{{"code":"{code}","msg":{msg},"requestTime":{request_time},"data":null}}"#)
}
