//! S3's listing rules over a sorted list of keys: prefix, delimiter roll-up into common
//! prefixes, a start position, and pages of at most `max_keys` entries, where a common prefix
//! counts as one entry. Pure, so that the rules are tested without a server.

/// One page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Keys with this after the prefix are rolled up into one common prefix each.
    pub delimiter: Option<&'a str>,
    /// Only entries after this one (a key or a common prefix), exclusive.
    pub after: Option<&'a str>,
    /// At most this many entries.
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The objects listed, in key order.
    pub objects: Vec<T>,
    /// The common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts after, when there is one.
    pub next_after: Option<String>,
}

/// The page `request` asks for out of `items`, which are sorted by `key`.
pub fn page<T: Clone>(items: &[T], key: impl Fn(&T) -> &str, request: PageRequest<'_>) -> Page<T> {
    let mut page = Page {
        objects: Vec::new(),
        common_prefixes: Vec::new(),
        next_after: None,
    };
    // Keys sort as bytes, so everything at or before the start position is skipped at once.
    let floor = match request.after {
        Some(after) if after >= request.prefix => after,
        _ => request.prefix,
    };
    let start = items.partition_point(|item| {
        let k = key(item);
        k < floor || (request.after == Some(k))
    });
    let mut entries = 0;
    let mut last_entry: Option<String> = None;
    for item in &items[start..] {
        let k = key(item);
        if !k.starts_with(request.prefix) {
            // Sorted: no later key has the prefix either.
            break;
        }
        let rolled_up = request.delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            k[request.prefix.len()..]
                .find(d)
                .map(|at| &k[..request.prefix.len() + at + d.len()])
        });
        if let Some(common) = rolled_up
            && (page.common_prefixes.last().is_some_and(|c| c == common)
                || request.after.is_some_and(|after| common <= after))
        {
            continue;
        }
        if entries == request.max_keys {
            page.next_after = last_entry;
            return page;
        }
        entries += 1;
        match rolled_up {
            Some(common) => {
                page.common_prefixes.push(common.to_owned());
                last_entry = Some(common.to_owned());
            }
            None => {
                page.objects.push(item.clone());
                last_entry = Some(k.to_owned());
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list(
        keys: &[&str],
        prefix: &str,
        delimiter: Option<&str>,
        max_keys: usize,
    ) -> Vec<Page<String>> {
        let items: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = page(
                &items,
                String::as_str,
                PageRequest {
                    prefix,
                    delimiter,
                    after: after.as_deref(),
                    max_keys,
                },
            );
            after.clone_from(&p.next_after);
            pages.push(p);
            if after.is_none() || pages.len() > items.len() + 1 {
                return pages;
            }
        }
    }

    #[test]
    fn a_delimiter_rolls_up_directories_and_each_counts_once() {
        let keys = ["a.txt", "dir/x", "dir/y", "dir/z/w", "e.txt", "f/1"];
        let pages = list(&keys, "", Some("/"), 2);
        let seen: Vec<(Vec<String>, Vec<String>)> = pages
            .iter()
            .map(|p| (p.objects.clone(), p.common_prefixes.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (vec!["a.txt".to_owned()], vec!["dir/".to_owned()]),
                (vec!["e.txt".to_owned()], vec!["f/".to_owned()]),
            ]
        );
        assert_eq!(pages[0].next_after.as_deref(), Some("dir/"));
        assert_eq!(pages[1].next_after, None);
        let inside = list(&keys, "dir/", Some("/"), 10);
        assert_eq!(inside[0].objects, vec!["dir/x", "dir/y"]);
        assert_eq!(inside[0].common_prefixes, vec!["dir/z/"]);
    }

    #[test]
    fn zero_max_keys_lists_nothing_and_says_nothing_follows() {
        let p = page(
            &["a".to_owned()],
            String::as_str,
            PageRequest {
                prefix: "",
                delimiter: None,
                after: None,
                max_keys: 0,
            },
        );
        assert_eq!(p.objects, Vec::<String>::new());
        assert_eq!(p.next_after, None);
    }

    proptest! {
        /// Paging through any listing returns exactly what one unbounded page returns, with
        /// no entry twice, every page within `max_keys`.
        #[test]
        fn pages_add_up_to_the_whole_listing(
            keys in proptest::collection::btree_set("[ab/]{0,5}", 0..40),
            prefix in "[ab/]{0,2}",
            slash in any::<bool>(),
            max_keys in 1usize..5,
        ) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let delimiter = slash.then_some("/");
            let whole = list(&keys, &prefix, delimiter, usize::MAX);
            prop_assert_eq!(whole.len(), 1);
            let pages = list(&keys, &prefix, delimiter, max_keys);
            let mut objects = Vec::new();
            let mut prefixes = Vec::new();
            for p in &pages {
                prop_assert!(p.objects.len() + p.common_prefixes.len() <= max_keys);
                objects.extend(p.objects.iter().cloned());
                prefixes.extend(p.common_prefixes.iter().cloned());
            }
            prop_assert_eq!(&objects, &whole[0].objects);
            prop_assert_eq!(&prefixes, &whole[0].common_prefixes);
            for key in &whole[0].objects {
                prop_assert!(key.starts_with(&prefix));
            }
        }
    }
}
