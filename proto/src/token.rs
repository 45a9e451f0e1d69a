//! Bearer tokens (the admin token, the data-plane token): the one rule by which every program
//! takes its token. Reading the file is the caller's (this crate does no IO).

/// Why a token cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token file holds nothing but whitespace: a deployment that meant to set a token.
    #[error("the token file is empty")]
    EmptyFile,
    /// The token has characters an `authorization` header cannot carry safely.
    #[error("the token must be printable ASCII without spaces")]
    NotPrintable,
}

/// The token from a file's text if there is a file (it wins), else from a value (a flag or an
/// environment variable). Surrounding whitespace is trimmed; an empty value means no token; a
/// token must be visible ASCII.
pub fn choose_token(
    file_text: Option<&str>,
    value: Option<&str>,
) -> Result<Option<String>, TokenError> {
    let token = match file_text {
        Some(text) => match text.trim() {
            "" => return Err(TokenError::EmptyFile),
            token => token,
        },
        None => match value.map(str::trim) {
            None | Some("") => return Ok(None),
            Some(token) => token,
        },
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotPrintable);
    }
    Ok(Some(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_wins_whitespace_goes_and_bad_tokens_are_refused() {
        assert_eq!(choose_token(Some(" f\n"), Some("v")), Ok(Some("f".into())));
        assert_eq!(choose_token(None, Some(" v ")), Ok(Some("v".into())));
        assert_eq!(choose_token(None, Some("  ")), Ok(None));
        assert_eq!(choose_token(None, None), Ok(None));
        assert_eq!(
            choose_token(Some("\n"), Some("v")),
            Err(TokenError::EmptyFile)
        );
        assert_eq!(
            choose_token(None, Some("a b")),
            Err(TokenError::NotPrintable)
        );
        assert_eq!(choose_token(Some("é"), None), Err(TokenError::NotPrintable));
    }
}
