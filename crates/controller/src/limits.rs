//! The bounds of every client input (`http-api.md`, "Limits"), as pure checks. The service
//! calls them for every front end, so HTTP and gRPC refuse the same inputs; the HTTP layer
//! uses the byte limits while it reads a body.

/// Longest file name, in bytes of UTF-8.
pub const FILE_NAME_MAX_BYTES: usize = 255;
/// Longest tag, in bytes of UTF-8.
pub const TAG_MAX_BYTES: usize = 128;
/// Most tags in one list of one request.
pub const TAGS_PER_REQUEST_MAX: usize = 100;
/// Most tags one file may carry.
pub const TAGS_PER_FILE_MAX: usize = 1_000;
/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 64;
/// Longest password, in bytes.
pub const PASSWORD_MAX_BYTES: usize = 1_024;
/// Largest JSON request body.
pub const JSON_BODY_MAX_BYTES: usize = 1024 * 1024;
/// Most S3 access keys one user may hold at once.
pub const S3_KEYS_PER_USER_MAX: usize = 16;
/// Longest S3 access key id looked up (ours have 20 characters; AWS allows up to 128).
pub const S3_KEY_ID_MAX_BYTES: usize = 128;
/// Largest multipart text part (`tags`).
pub const MULTIPART_TEXT_MAX_BYTES: usize = 64 * 1024;

/// An input over one of the limits. Nothing has changed when one is returned. Messages
/// never repeat the offending value: it may be a password, and it may be large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A file name that is empty or too long.
    #[error("A file name must be 1 to {max} bytes long (got {got})")]
    FileNameLength {
        /// Its length in bytes.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A tag that is empty or too long.
    #[error("A tag must be 1 to {max} bytes long (got {got})")]
    TagLength {
        /// Its length in bytes.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A tag containing a comma, which the comma-separated syntax could never express.
    #[error("A tag must not contain a comma")]
    TagComma,
    /// A list of more tags than one request may carry.
    #[error("At most {max} tags per list in one request (got {got})")]
    TooManyTags {
        /// How many the list had.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A tag change that would give a file more tags than allowed.
    #[error("File {file_id} would carry {would_have} tags, more than the {max} allowed")]
    TooManyTagsOnFile {
        /// The file.
        file_id: uuid::Uuid,
        /// Its tag count after the change.
        would_have: usize,
        /// The limit.
        max: usize,
    },
    /// A username that is empty or too long.
    #[error("A username must be 1 to {max} characters long (got {got})")]
    UsernameLength {
        /// Its length in characters.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A password that is empty or too long.
    #[error("A password must be 1 to {max} bytes long (got {got})")]
    PasswordLength {
        /// Its length in bytes.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A name, tag or username with a control character (`what` says which).
    #[error("A {what} must not contain control characters")]
    ControlCharacter {
        /// `file name`, `tag` or `username`.
        what: &'static str,
    },
    /// A new S3 access key for a user who holds as many as allowed.
    #[error("You hold {max} S3 access keys, the most allowed: delete one first")]
    TooManyS3Keys {
        /// The limit.
        max: usize,
    },
    /// A new multipart upload for a user who has as many in progress as allowed.
    #[error(
        "You have {max} multipart uploads in progress, the most allowed: complete or abort one first"
    )]
    TooManyUploads {
        /// The limit.
        max: usize,
    },
}

fn no_control(text: &str, what: &'static str) -> Result<(), LimitError> {
    if text.chars().any(char::is_control) {
        return Err(LimitError::ControlCharacter { what });
    }
    Ok(())
}

/// A stored file name: 1–255 bytes, no control characters.
pub fn check_file_name(name: &str) -> Result<(), LimitError> {
    if name.is_empty() || name.len() > FILE_NAME_MAX_BYTES {
        return Err(LimitError::FileNameLength {
            got: name.len(),
            max: FILE_NAME_MAX_BYTES,
        });
    }
    no_control(name, "file name")
}

/// One tag: 1–128 bytes, no control characters, no comma.
pub fn check_tag(tag: &str) -> Result<(), LimitError> {
    if tag.is_empty() || tag.len() > TAG_MAX_BYTES {
        return Err(LimitError::TagLength {
            got: tag.len(),
            max: TAG_MAX_BYTES,
        });
    }
    if tag.contains(',') {
        return Err(LimitError::TagComma);
    }
    no_control(tag, "tag")
}

/// One list of tags in a request: at most 100, each a valid tag. The count is checked first,
/// so an oversized list is refused without looking at its members.
pub fn check_tags(tags: &[String]) -> Result<(), LimitError> {
    if tags.len() > TAGS_PER_REQUEST_MAX {
        return Err(LimitError::TooManyTags {
            got: tags.len(),
            max: TAGS_PER_REQUEST_MAX,
        });
    }
    tags.iter().try_for_each(|t| check_tag(t))
}

/// The tags a file would carry after a change: at most 1,000.
pub fn check_file_tag_count(file_id: uuid::Uuid, would_have: usize) -> Result<(), LimitError> {
    if would_have > TAGS_PER_FILE_MAX {
        return Err(LimitError::TooManyTagsOnFile {
            file_id,
            would_have,
            max: TAGS_PER_FILE_MAX,
        });
    }
    Ok(())
}

/// A username (1–64 printable characters) and a password (1–1,024 bytes).
pub fn check_credentials(username: &str, password: &str) -> Result<(), LimitError> {
    let chars = username.chars().count();
    if chars == 0 || chars > USERNAME_MAX_CHARS {
        return Err(LimitError::UsernameLength {
            got: chars,
            max: USERNAME_MAX_CHARS,
        });
    }
    no_control(username, "username")?;
    if password.is_empty() || password.len() > PASSWORD_MAX_BYTES {
        return Err(LimitError::PasswordLength {
            got: password.len(),
            max: PASSWORD_MAX_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_bounded_in_bytes_and_free_of_control_characters() {
        assert_eq!(check_file_name("report final.pdf"), Ok(()));
        assert_eq!(check_file_name(&"n".repeat(255)), Ok(()));
        // 85 three-byte characters are 255 bytes; one more is over.
        assert_eq!(check_file_name(&"€".repeat(85)), Ok(()));
        assert_eq!(
            check_file_name(&"€".repeat(86)),
            Err(LimitError::FileNameLength { got: 258, max: 255 })
        );
        assert_eq!(
            check_file_name(""),
            Err(LimitError::FileNameLength { got: 0, max: 255 })
        );
        for bad in ["a\nb", "tab\there", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(
                check_file_name(bad),
                Err(LimitError::ControlCharacter { what: "file name" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tags_are_bounded_and_never_hold_a_comma() {
        assert_eq!(check_tag("big  cat"), Ok(()));
        assert_eq!(check_tag(&"t".repeat(128)), Ok(()));
        assert_eq!(
            check_tag(&"t".repeat(129)),
            Err(LimitError::TagLength { got: 129, max: 128 })
        );
        assert_eq!(
            check_tag(""),
            Err(LimitError::TagLength { got: 0, max: 128 })
        );
        assert_eq!(check_tag("a,b"), Err(LimitError::TagComma));
        assert_eq!(
            check_tag("a\u{1b}[31m"),
            Err(LimitError::ControlCharacter { what: "tag" })
        );
    }

    #[test]
    fn a_request_carries_at_most_a_hundred_tags_per_list() {
        let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        assert_eq!(check_tags(&[]), Ok(()));
        assert_eq!(check_tags(&tags(100)), Ok(()));
        assert_eq!(
            check_tags(&tags(101)),
            Err(LimitError::TooManyTags { got: 101, max: 100 })
        );
        let mut one_bad = tags(3);
        one_bad.push("x,y".to_owned());
        assert_eq!(check_tags(&one_bad), Err(LimitError::TagComma));
    }

    #[test]
    fn a_file_carries_at_most_a_thousand_tags() {
        let id = uuid::Uuid::nil();
        assert_eq!(check_file_tag_count(id, 1_000), Ok(()));
        assert_eq!(
            check_file_tag_count(id, 1_001),
            Err(LimitError::TooManyTagsOnFile {
                file_id: id,
                would_have: 1_001,
                max: 1_000
            })
        );
    }

    #[test]
    fn credentials_are_bounded() {
        assert_eq!(check_credentials("alice", "pw"), Ok(()));
        assert_eq!(
            check_credentials(&"ü".repeat(64), &"p".repeat(1_024)),
            Ok(()),
            "usernames count characters, passwords bytes"
        );
        assert_eq!(
            check_credentials(&"u".repeat(65), "pw"),
            Err(LimitError::UsernameLength { got: 65, max: 64 })
        );
        assert_eq!(
            check_credentials("", "pw"),
            Err(LimitError::UsernameLength { got: 0, max: 64 })
        );
        assert_eq!(
            check_credentials("al\tice", "pw"),
            Err(LimitError::ControlCharacter { what: "username" })
        );
        assert_eq!(
            check_credentials("alice", ""),
            Err(LimitError::PasswordLength { got: 0, max: 1_024 })
        );
        assert_eq!(
            check_credentials("alice", &"p".repeat(1_025)),
            Err(LimitError::PasswordLength {
                got: 1_025,
                max: 1_024
            })
        );
    }

    #[test]
    fn messages_never_repeat_the_offending_value() {
        let secret = "hunter2".repeat(200);
        let message = check_credentials("alice", &secret).unwrap_err().to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }
}
