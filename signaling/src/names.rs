//! Limits on the names users choose: rooms, identities, display names.
//!
//! Names are length- and charset-limited so they can appear in logs, metrics and URLs
//! safely; they are never used as file paths.

/// Longest room name or identity.
pub const MAX_NAME: usize = 64;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 128;

fn validate_token_like(kind: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(format!("{kind} must be 1 to {MAX_NAME} characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || value.starts_with('.')
    {
        return Err(format!(
            "{kind} may use only letters, digits, '-', '_' and '.' (not leading)"
        ));
    }
    Ok(())
}

/// A room name: 1–64 of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn validate_room(room: &str) -> Result<(), String> {
    validate_token_like("a room name", room)
}

/// An identity: same rule as a room name.
pub fn validate_identity(identity: &str) -> Result<(), String> {
    validate_token_like("an identity", identity)
}

/// A display name: up to 128 characters, no control characters.
pub fn validate_display_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(format!(
            "a display name is at most {MAX_DISPLAY_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a display name cannot contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_traversal_nul_and_oversize() {
        for bad in [
            "",
            "../etc",
            "%2e%2e/",
            "a/b",
            "a\0b",
            ".hidden",
            &"x".repeat(10_000),
            "sp ace",
        ] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
            assert!(validate_identity(bad).is_err(), "{bad:?}");
        }
        for good in ["standup", "team-42", "a.b_c"] {
            assert!(validate_room(good).is_ok(), "{good}");
        }
        assert!(validate_display_name("Zoë Ångström 🎥").is_ok());
        assert!(validate_display_name("evil\nname").is_err());
        assert!(validate_display_name(&"é".repeat(129)).is_err());
    }
}
