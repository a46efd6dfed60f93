//! The images a Dockerfile refers to, and named contexts substituted into its text.
//!
//! [`image_references`] lists what the needed stages of a resolved Dockerfile take
//! from outside the Dockerfile: `FROM` images, `COPY --from=` images and `RUN
//! --mount` `from=` images (`scratch` excluded). The project planner maps them to
//! services (graph edges) and to named contexts.
//!
//! [`substitute`] rewrites references to named contexts in the Dockerfile text —
//! the first word after `FROM`'s flags, `--from=NAME` and the `from=NAME` field of
//! `--mount=` flags — keeping every line where it was, so locations in errors stay
//! right. A name that is also a stage name is left alone (the stage wins, as in
//! BuildKit). References the rewrite cannot see (a `FROM $VAR` whose value is a
//! context name) remain; the planner re-resolves the result to catch them.

use std::collections::{BTreeMap, BTreeSet};

use crate::frontend::dockerfile::{Base, Mount, ResolvedBuild, ResolvedInstruction, StageOrImage};

/// Images (as written after expansion) the resolved build's stages use.
pub fn image_references(build: &ResolvedBuild) -> BTreeSet<String> {
    let mut references = BTreeSet::new();
    let mut add = |from: &Option<StageOrImage>| {
        if let Some(StageOrImage::Image(reference)) = from {
            references.insert(reference.clone());
        }
    };
    let mut bases = BTreeSet::new();
    for stage in &build.stages {
        if let Base::Image(reference) = &stage.base {
            bases.insert(reference.clone());
        }
        for step in &stage.steps {
            match &step.instruction {
                ResolvedInstruction::Copy(copy) => add(&copy.from),
                ResolvedInstruction::Run(run) => {
                    for mount in &run.mounts {
                        match mount {
                            Mount::Bind(bind) => add(&bind.from),
                            Mount::Cache(cache) => add(&cache.from),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    references.extend(bases);
    references.retain(|r| !r.eq_ignore_ascii_case("scratch"));
    references
}

/// `text` with references to the contexts in `images` (name → image reference)
/// replaced by the image; names in `stage_names` are left alone.
pub fn substitute(
    text: &str,
    images: &BTreeMap<String, String>,
    stage_names: &BTreeSet<String>,
) -> String {
    let replace = |name: &str| -> Option<&str> {
        if stage_names.contains(&name.to_ascii_lowercase()) {
            return None;
        }
        images.get(name).map(String::as_str)
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&substitute_line(line, &replace));
    }
    out
}

/// Splits off the next whitespace-separated word: (leading whitespace, word, rest).
fn next_word(text: &str) -> (&str, &str, &str) {
    let start = text.len() - text.trim_start().len();
    let after = &text[start..];
    let end = after.find(char::is_whitespace).unwrap_or(after.len());
    (&text[..start], &after[..end], &after[end..])
}

fn substitute_line<'a>(line: &str, replace: &impl Fn(&str) -> Option<&'a str>) -> String {
    let (indent, keyword, mut rest) = next_word(line);
    let keyword_upper = keyword.to_ascii_uppercase();
    if !matches!(keyword_upper.as_str(), "FROM" | "COPY" | "ADD" | "RUN") {
        return line.to_owned();
    }
    let mut out = format!("{indent}{keyword}");
    // Flags come first; rewrite the ones that name a source.
    loop {
        let (space, word, after) = next_word(rest);
        if !word.starts_with("--") {
            break;
        }
        out.push_str(space);
        out.push_str(&substitute_flag(word, replace));
        rest = after;
    }
    if keyword_upper == "FROM" {
        let (space, word, after) = next_word(rest);
        out.push_str(space);
        out.push_str(replace(word).unwrap_or(word));
        rest = after;
    }
    out.push_str(rest);
    out
}

fn substitute_flag<'a>(flag: &str, replace: &impl Fn(&str) -> Option<&'a str>) -> String {
    if let Some(name) = flag.strip_prefix("--from=") {
        return match replace(name) {
            Some(image) => format!("--from={image}"),
            None => flag.to_owned(),
        };
    }
    if let Some(spec) = flag.strip_prefix("--mount=") {
        let fields: Vec<String> = spec
            .split(',')
            .map(|field| match field.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("from") => match replace(value) {
                    Some(image) => format!("{key}={image}"),
                    None => field.to_owned(),
                },
                _ => field.to_owned(),
            })
            .collect();
        return format!("--mount={}", fields.join(","));
    }
    flag.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::dockerfile::{self, ResolveOptions};

    fn images() -> BTreeMap<String, String> {
        BTreeMap::from([("shared".to_owned(), "shop-api:dev".to_owned())])
    }

    #[test]
    fn rewrites_from_copy_and_mount_references_only() {
        let text = "FROM shared AS base\n\
                    FROM busybox\n\
                    COPY --from=shared /app /app\n\
                    RUN --mount=type=bind,from=shared,target=/s echo shared --from=shared\n\
                    from --platform=linux/amd64 shared\n\
                    COPY shared /x\n";
        let out = substitute(text, &images(), &BTreeSet::new());
        assert_eq!(
            out,
            "FROM shop-api:dev AS base\n\
             FROM busybox\n\
             COPY --from=shop-api:dev /app /app\n\
             RUN --mount=type=bind,from=shop-api:dev,target=/s echo shared --from=shared\n\
             from --platform=linux/amd64 shop-api:dev\n\
             COPY shared /x\n"
        );
    }

    #[test]
    fn stage_names_win_over_contexts() {
        let text = "FROM busybox AS shared\nFROM busybox\nCOPY --from=shared /a /a\n";
        let stages = BTreeSet::from(["shared".to_owned()]);
        assert_eq!(substitute(text, &images(), &stages), text);
    }

    #[test]
    fn references_cover_bases_copies_and_mounts() {
        let text = "FROM base-image AS a\n\
                    FROM scratch AS b\n\
                    FROM a\n\
                    COPY --from=tools /bin/x /x\n\
                    COPY --from=b /y /y\n\
                    RUN --mount=type=bind,from=seed,target=/s true\n";
        let build = dockerfile::load(text, "Dockerfile")
            .unwrap()
            .resolve(&ResolveOptions::default())
            .unwrap();
        let refs: Vec<String> = image_references(&build).into_iter().collect();
        assert_eq!(refs, ["base-image", "seed", "tools"]);
    }
}
