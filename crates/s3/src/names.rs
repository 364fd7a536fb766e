//! How RedCloud's names and tags appear in S3: which tags can be buckets, and how a tag is an
//! S3 object tag.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Whether `tag` is a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit, no two dots in a row, and not shaped
/// like an IP address. Other tags stay reachable through the `x-redcloud-tags` extension.
pub fn is_bucket_name(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| edge(b) || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && !tag.contains("..")
        && tag.parse::<std::net::Ipv4Addr>().is_err()
}

/// A RedCloud tag as an S3 object tag: `k=v` is key `k` and value `v`; a tag without `=` is a
/// key with an empty value.
pub fn s3_tag(tag: &str) -> (String, String) {
    match tag.split_once('=') {
        Some((key, value)) => (key.to_owned(), value.to_owned()),
        None => (tag.to_owned(), String::new()),
    }
}

/// An S3 object tag as a RedCloud tag: the inverse of [`s3_tag`].
pub fn redcloud_tag(key: &str, value: &str) -> String {
    if value.is_empty() {
        key.to_owned()
    } else {
        format!("{key}={value}")
    }
}

/// The tags of an `x-amz-tagging` header, which is URL-encoded like a query string
/// (`k1=v1&k2`).
pub fn tagging_header(header: &str) -> Result<Vec<String>, String> {
    let decode = |text: &str| {
        percent_decode_str(&text.replace('+', " "))
            .decode_utf8()
            .map(|t| t.into_owned())
            .map_err(|_| format!("the x-amz-tagging header has a tag that is not UTF-8: {text:?}"))
    };
    header
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok(redcloud_tag(&decode(key)?, &decode(value)?))
        })
        .collect()
}

/// What `encoding-type=url` escapes in listed keys and prefixes: everything but unreserved
/// characters and `/`, as S3 does.
const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `text` escaped for a listing requested with `encoding-type=url`.
pub fn url_encode(text: &str) -> String {
    utf8_percent_encode(text, URL_ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "work", "my-photos.2024", &"a".repeat(63)] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Work",
            "-work",
            "work-",
            "a..b",
            "with space",
            "k=v",
            "192.168.1.1",
            "été",
        ] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_round_trip_through_s3_tags() {
        for tag in ["plain", "k=v", "a=b=c", "name with space"] {
            let (key, value) = s3_tag(tag);
            assert_eq!(redcloud_tag(&key, &value), tag);
        }
        assert_eq!(s3_tag("project=x"), ("project".to_owned(), "x".to_owned()));
        assert_eq!(s3_tag("draft"), ("draft".to_owned(), String::new()));
    }

    #[test]
    fn the_tagging_header_is_url_decoded() {
        assert_eq!(
            tagging_header("a=1&b&c%20d=e+f&&k%3Dx=").unwrap(),
            vec!["a=1", "b", "c d=e f", "k=x"]
        );
        assert!(tagging_header("a=%ff").is_err());
        assert_eq!(tagging_header("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn listed_keys_escape_all_but_unreserved_and_slash() {
        assert_eq!(url_encode("dir/a b+c%.txt"), "dir/a%20b%2Bc%25.txt");
        assert_eq!(url_encode("été"), "%C3%A9t%C3%A9");
    }
}
