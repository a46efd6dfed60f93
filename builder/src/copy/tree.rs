//! The two trees `COPY` reads from — the build context index and a stage's
//! rootfs view — behind one small interface, plus source wildcard expansion
//! and the include/exclude walk.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Error;
use crate::context::patterns::{self, MatchInfo, PatternMatcher};
use crate::context::{BuildContext, FileKind, FileMeta, Index};
use crate::rootfs::{self, RootfsView};

pub(crate) enum Tree<'a> {
    Context {
        ctx: &'a BuildContext,
        index: Arc<Index>,
    },
    Rootfs(&'a RootfsView),
}

/// One object of a tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Absolute path inside the tree (`/` is the context root / rootfs root).
    pub path: PathBuf,
    pub meta: FileMeta,
    /// Where the content lives on the host.
    pub host: PathBuf,
    handle: Handle,
}

#[derive(Debug, Clone)]
enum Handle {
    Pos(usize),
    Entry,
}

impl Node {
    /// The index position, for context nodes.
    pub fn position(&self) -> Option<usize> {
        match self.handle {
            Handle::Pos(p) => Some(p),
            Handle::Entry => None,
        }
    }
}

impl<'a> Tree<'a> {
    fn context_node(ctx: &BuildContext, index: &Index, pos: usize) -> Node {
        let entry = index.entry(pos);
        let mut meta = entry.meta.clone();
        // BuildKit's context transfer resets ownership (docker's resetUIDAndGID).
        meta.uid = 0;
        meta.gid = 0;
        Node {
            path: Path::new("/").join(&entry.path),
            meta,
            host: ctx.root().join(&entry.path),
            handle: Handle::Pos(pos),
        }
    }

    fn rootfs_node(entry: rootfs::Entry) -> Node {
        Node {
            path: entry.path.clone(),
            meta: entry.meta.clone(),
            host: entry.real_path.clone(),
            handle: Handle::Entry,
        }
    }

    /// Looks up an absolute tree path.
    pub fn lookup(&self, path: &Path, follow_final: bool) -> Result<Option<Node>, Error> {
        match self {
            Tree::Context { ctx, index } => Ok(index
                .lookup(path, follow_final)?
                .map(|pos| Self::context_node(ctx, index, pos))),
            Tree::Rootfs(view) => {
                let entry = if follow_final {
                    view.lookup_follow(path)?
                } else {
                    view.lookup(path)?
                };
                Ok(entry.map(Self::rootfs_node))
            }
        }
    }

    /// The children of a directory node, sorted by name.
    pub fn children(&self, dir: &Node) -> Result<Vec<(OsString, Node)>, Error> {
        match self {
            Tree::Context { ctx, index } => {
                let pos = dir.position().expect("context nodes carry positions");
                Ok(index
                    .children(pos)
                    .map(|child| {
                        let name = index
                            .entry(child)
                            .path
                            .file_name()
                            .expect("non-root entries have names")
                            .to_owned();
                        (name, Self::context_node(ctx, index, child))
                    })
                    .collect())
            }
            Tree::Rootfs(view) => Ok(view
                .read_dir(&dir.path)?
                .into_iter()
                .map(|d| (d.name, Self::rootfs_node(d.entry)))
                .collect()),
        }
    }

    /// Expands a source pattern (absolute, cleaned, `/`-separated) with Go's
    /// `filepath.Match` per component. Results are in path order and are not
    /// followed if they are symlinks.
    pub fn expand(&self, pattern: &str) -> Result<Vec<Node>, Error> {
        let Some(root) = self.lookup(Path::new("/"), true)? else {
            return Ok(Vec::new());
        };
        let mut candidates = vec![root];
        for component in pattern.split('/').filter(|c| !c.is_empty()) {
            let mut next = Vec::new();
            for candidate in &candidates {
                let dir = if candidate.meta.kind == FileKind::Symlink {
                    match self.lookup(&candidate.path, true)? {
                        Some(d) => d,
                        None => continue,
                    }
                } else {
                    candidate.clone()
                };
                if !dir.meta.is_dir() {
                    continue;
                }
                if patterns::has_wildcards(component) {
                    for (name, child) in self.children(&dir)? {
                        if patterns::match_component(component, &name.to_string_lossy())? {
                            next.push(child);
                        }
                    }
                } else if let Some(child) =
                    self.lookup(&dir.path.join(unescape(component)), false)?
                {
                    next.push(child);
                }
            }
            candidates = next;
        }
        Ok(candidates)
    }

    /// Walks the subtree under `root` (which is not included), keeping what
    /// `include` (when given) selects and `exclude` does not. Directories
    /// that are not selected themselves are kept when something below them is.
    /// Appends (path relative to root, node) to `out` in depth-first order;
    /// returns whether anything was kept.
    pub fn walk_filtered(
        &self,
        root: &Node,
        include: Option<&PatternMatcher>,
        exclude: &PatternMatcher,
        out: &mut Vec<(PathBuf, Node)>,
    ) -> Result<bool, Error> {
        // The common `COPY dir /dest`: the context index already holds the
        // subtree, in order.
        if let (Tree::Context { ctx, index }, None, true, Some(pos)) =
            (self, include, exclude.is_empty(), root.position())
        {
            let root_path = &index.entry(pos).path;
            let below = index.descendants(pos);
            let any = !below.is_empty();
            out.reserve(below.len());
            for child in below {
                let rel = index
                    .entry(child)
                    .path
                    .strip_prefix(root_path)
                    .expect("descendants are below their root")
                    .to_owned();
                out.push((rel, Self::context_node(ctx, index, child)));
            }
            return Ok(any);
        }
        self.walk_dir(
            root,
            Path::new(""),
            include,
            &MatchInfo::default(),
            exclude,
            &MatchInfo::default(),
            out,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_dir(
        &self,
        dir: &Node,
        rel_dir: &Path,
        include: Option<&PatternMatcher>,
        inc_parent: &MatchInfo,
        exclude: &PatternMatcher,
        exc_parent: &MatchInfo,
        out: &mut Vec<(PathBuf, Node)>,
    ) -> Result<bool, Error> {
        let mut any = false;
        for (name, node) in self.children(dir)? {
            let rel = rel_dir.join(&name);
            let needs_text = include.is_some() || !exclude.is_empty();
            let text = if needs_text {
                rel.to_string_lossy().into_owned()
            } else {
                String::new()
            };
            let (included, inc_info) = match include {
                Some(m) => m.matches_with_parent(&text, inc_parent),
                None => (true, MatchInfo::default()),
            };
            let (excluded, exc_info) = if exclude.is_empty() {
                (false, MatchInfo::default())
            } else {
                exclude.matches_with_parent(&text, exc_parent)
            };
            let selected = included && !excluded;
            if node.meta.is_dir() {
                let may_include_below = included
                    || include
                        .is_some_and(|m| m.patterns().iter().any(|p| p.could_match_below(&text)));
                let may_survive_exclude = !excluded || exclude.must_descend(&text, &exc_info);
                if !(selected || may_include_below && may_survive_exclude) {
                    continue;
                }
                let at = out.len();
                out.push((rel.clone(), node.clone()));
                let below =
                    self.walk_dir(&node, &rel, include, &inc_info, exclude, &exc_info, out)?;
                if !selected && !below {
                    out.truncate(at);
                    continue;
                }
                any = true;
            } else if selected {
                out.push((rel, node));
                any = true;
            }
        }
        Ok(any)
    }
}

/// Removes `\` escapes from a literal path component.
fn unescape(component: &str) -> String {
    if !component.contains('\\') {
        return component.to_owned();
    }
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}
