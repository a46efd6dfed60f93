//! "Did you mean …?" suggestions by edit distance.

/// Edit distance in characters where swapping two neighbours counts as one edit
/// (optimal string alignment), so `chwon` is closer to `chown` than to `chmod`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j - 1] + cost)
                .min(d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The option closest to `word` (case-insensitively), if close enough to be a
/// likely typo: at most 2 edits, or a quarter of the word's length.
pub(crate) fn closest<'a>(word: &str, options: impl Iterator<Item = &'a str>) -> Option<String> {
    if word.is_empty() {
        return None;
    }
    let word = word.to_lowercase();
    let limit = 2.max(word.chars().count() / 4);
    options
        .map(|o| (distance(&word, &o.to_lowercase()), o))
        .filter(|&(d, _)| d <= limit && d > 0)
        .min_by_key(|&(d, _)| d)
        .map(|(_, o)| o.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_words_only() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("chwon", "chown"), 1);
        let flags = ["chown", "chmod", "from", "link"];
        assert_eq!(
            closest("chwon", flags.into_iter()).as_deref(),
            Some("chown")
        );
        assert_eq!(closest("frm", flags.into_iter()).as_deref(), Some("from"));
        assert_eq!(closest("platform", flags.into_iter()), None);
    }
}
