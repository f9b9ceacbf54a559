//! Request parameters, from the query string (GET) or the JSON body (POST), with Bitget's
//! error for each way a parameter can be wrong.

use super::codes::ApiError;

/// Parameter name/value pairs in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string (`a=1&b=2`), percent-decoding values.
    pub fn from_query(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// Parses a JSON object body; string, number and boolean values become parameters.
    ///
    /// # Errors
    /// `400172` when the body is not a JSON object.
    pub fn from_json_body(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| ApiError::bad_request("400172", ""))?;
        let object = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("400172", ""))?;
        Ok(Self(
            object
                .iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), text))
                })
                .collect(),
        ))
    }

    /// The value of `name`, if present and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// The value of `name`, or `40019` naming it.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::missing(name))
    }

    /// `name` parsed as an unsigned number, `None` when absent, `40020` when malformed.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| v.trim().parse::<u64>().map_err(|_| ApiError::invalid(name)))
            .transpose()
    }
}
