//! Syntax checks for the names and addresses that appear in resources.
//!
//! Each returns `Err(reason)` with a sentence fragment that the validator prefixes with the
//! resource and field.

/// Longest resource name: the longest DNS subdomain.
pub const MAX_NAME_LEN: usize = 253;

/// A resource name: a DNS subdomain (lower-case letters, digits, `-` and `.`, starting and
/// ending with a letter or digit), so it is safe in store keys, URLs and metric labels.
pub fn check_resource_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ok_edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !name.chars().all(ok_char) || !ok_edge(first) || !ok_edge(last) {
        return Err(format!(
            "{name:?} is not a valid name: use lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// One DNS label: 1-63 characters of letters, digits and `-`, not starting or ending with `-`.
fn check_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A DNS name (not an IP address literal check; any letters allowed).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(check_label)
}

/// A route hostname: a lower-case DNS name, optionally with a leading `*.` wildcard label.
pub fn check_hostname(hostname: &str) -> Result<(), String> {
    let rest = hostname.strip_prefix("*.").unwrap_or(hostname);
    if hostname.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{hostname:?} must be lower case"));
    }
    if rest.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{hostname:?} is an IP address; hostnames must be DNS names"
        ));
    }
    if rest.contains('*') {
        return Err(format!(
            "{hostname:?}: a wildcard is allowed only as the whole first label (\"*.example.com\")"
        ));
    }
    if !is_dns_name(rest) {
        return Err(format!("{hostname:?} is not a valid DNS name"));
    }
    Ok(())
}

/// An endpoint address: `host:port` with an IPv4 address, `[IPv6]` or DNS name and a port
/// from 1 to 65535.
pub fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return match address.rsplit_once(':') {
            Some((_, "0")) => Err(format!("{address:?}: port must be 1-65535")),
            _ => Ok(()),
        };
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} must be host:port"));
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("{address:?}: port must be 1-65535")),
        Ok(_) => {}
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(format!(
            "{address:?}: not a valid IPv6 address with port ([addr]:port)"
        ));
    }
    if !is_dns_name(host) {
        return Err(format!(
            "{address:?}: {host:?} is neither an IP address nor a DNS name"
        ));
    }
    Ok(())
}

/// An HTTP method token, upper case (`GET`, `POST`, or an extension method).
pub fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "{method:?} is not an HTTP method (upper-case letters, e.g. GET)"
        ));
    }
    Ok(())
}

/// An HTTP header name (an RFC 9110 token).
pub fn check_header_name(name: &str) -> Result<(), String> {
    const SPECIALS: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
    {
        return Err(format!("{name:?} is not a valid header name"));
    }
    Ok(())
}

/// A header value we can compare against: visible ASCII, spaces and tabs.
pub fn check_header_value(value: &str) -> Result<(), String> {
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "{value:?} contains characters not allowed in a header value"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        assert!(check_resource_name("users-api").is_ok());
        assert!(check_resource_name("v1.users").is_ok());
        assert!(check_resource_name("").is_err());
        assert!(check_resource_name("Users").is_err());
        assert!(check_resource_name("-users").is_err());
        assert!(check_resource_name("users/x").is_err());
        assert!(check_resource_name(&"a".repeat(254)).is_err());
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("api.example.com").is_ok());
        assert!(check_hostname("*.example.com").is_ok());
        assert!(check_hostname("api.*.com").is_err());
        assert!(check_hostname("*").is_err());
        assert!(check_hostname("API.example.com").is_err());
        assert!(check_hostname("10.0.0.1").is_err());
        assert!(check_hostname("exa_mple.com").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address("127.0.0.1:9001").is_ok());
        assert!(check_address("[::1]:9001").is_ok());
        assert!(check_address("users.internal:80").is_ok());
        assert!(check_address("127.0.0.1").is_err());
        assert!(check_address("127.0.0.1:0").is_err());
        assert!(check_address("127.0.0.1:70000").is_err());
        assert!(check_address("::1:80").is_err());
        assert!(check_address("bad host:80").is_err());
    }

    #[test]
    fn methods_and_headers() {
        assert!(check_method("GET").is_ok());
        assert!(check_method("get").is_err());
        assert!(check_header_name("x-canary").is_ok());
        assert!(check_header_name("x canary").is_err());
        assert!(check_header_value("a b\tc").is_ok());
        assert!(check_header_value("a\nb").is_err());
    }
}
