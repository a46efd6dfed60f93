//! The attribution model: an [`Inventory`] fed the layers of an image in
//! order, knowing after each which packages are present and which layer
//! introduced each one.
//!
//! Contract of [`Inventory::apply_layer`]:
//!
//! - Packages first seen in a layer are attributed to it. A package whose
//!   version changed (same ecosystem, name and architecture, different
//!   version) shows the new version and is attributed to the layer that
//!   changed it. A package whose metadata is rewritten with the same version
//!   keeps its earlier attribution.
//! - A package whose metadata file is deleted (whiteout, opaque directory,
//!   replaced by another kind of entry) or whose entry disappears from a
//!   rewritten database (dpkg status, apk installed) is dropped.
//! - Deletions and opaque directories apply to lower layers only, whatever
//!   their order in the layer.
//! - Cost is proportional to the entries of the layer: the state of every file
//!   a cataloger reads is kept (parsed) between layers, so a layer that only
//!   adds dpkg `.list` files or a copyright file never re-reads the dpkg status
//!   file, and the merged tree below is never walked.
//! - On `Err` (unreadable stream or directory) the inventory is unchanged.
//!   Per-file parse failures are not errors: they become [`Diagnostic`]s and the
//!   file contributes nothing.
//!
//! [`Inventory::packages`] joins the state into components: purls (with the
//! distro from `os-release`), Debian licences from copyright files, evidence
//! paths, and dependencies resolved to packages that are present.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, Catalogers, Parsed, Target};
use crate::error::{Diagnostic, Error};
use crate::layer::{DirTree, EntryKind, LayerEntry, LayerView, LayerVisitor};
use crate::package::{Dependency, Ecosystem, License, Package};

const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// Where a layer came from, as the SBOM should tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the layer blob (`sha256:…`), if known.
    pub digest: Option<String>,
    /// Digest of the uncompressed layer (`sha256:…`), if known.
    pub diff_id: Option<String>,
    /// The instruction that created it, after expansion (`RUN apt-get install -y curl`).
    pub created_by: Option<String>,
    /// Where the instruction is (`Dockerfile:12`).
    pub source: Option<String>,
    /// The build stage (`builder`, or its index).
    pub stage: Option<String>,
    /// For layers of a base image: the image (`docker.io/library/debian:bookworm@sha256:…`).
    pub base_image: Option<String>,
}

/// What a layer changed, by package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSummary {
    /// Index of the layer in [`Inventory::layers`].
    pub layer: usize,
    /// Packages first seen in this layer.
    pub added: usize,
    /// Packages whose version this layer changed.
    pub changed: usize,
    /// Packages this layer removed.
    pub removed: usize,
    /// Files of this layer the catalogers read.
    pub files_read: usize,
    /// Files that could not be cataloged (see [`Inventory::diagnostics`]).
    pub diagnostics: usize,
}

/// A package present in the image, joined with what the inventory knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogedPackage {
    /// The package (Debian licences from its copyright file included).
    pub package: Package,
    /// Its package URL; `None` for the operating system.
    pub purl: Option<String>,
    /// A stable, unique reference: the purl, or `os:<id>@<version>`.
    pub bom_ref: String,
    /// Index in [`Inventory::layers`] of the layer that introduced it.
    pub layer: usize,
    /// Files that prove it, sorted.
    pub evidence: Vec<String>,
    /// `bom_ref`s of the present packages it depends on, sorted.
    pub depends_on: Vec<String>,
}

/// What one layer changes in an [`Inventory`] whose lower layers are known:
/// made by [`Inventory::layer_delta`], applied by [`Inventory::apply_delta`].
///
/// It serialises to JSON ([`LayerDelta::to_json`], [`LayerDelta::from_json`])
/// so that a build can keep it and never read the layer again. Per-file
/// diagnostics are not kept (only their count): a delta read back has none.
#[derive(Debug, Serialize, Deserialize)]
pub struct LayerDelta {
    /// [`LayerDelta::FORMAT`] of the writer; a delta of another format is refused.
    format: String,
    /// Paths whose lower-layer state (the path and everything under it) is gone.
    removed: Vec<String>,
    /// Directories whose lower-layer contents are gone.
    opaque: Vec<String>,
    /// New state from this layer.
    added: BTreeMap<String, Record>,
    files_read: usize,
    diagnostic_count: usize,
    #[serde(skip)]
    diagnostics: Vec<Diagnostic>,
}

impl LayerDelta {
    /// The format kept deltas are written in: the crate version and a revision
    /// of the record model, so that a newer kiln (whose catalogers may read more)
    /// never trusts an older one's deltas.
    pub const FORMAT: &'static str = concat!("kiln-sbom-delta/1/", env!("CARGO_PKG_VERSION"));

    /// The delta as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a layer delta always serialises")
    }

    /// A delta written by [`LayerDelta::to_json`] of this same format.
    pub fn from_json(bytes: &[u8]) -> Result<LayerDelta, Error> {
        let delta: LayerDelta =
            serde_json::from_slice(bytes).map_err(|source| Error::ReadDelta {
                reason: source.to_string(),
            })?;
        if delta.format != Self::FORMAT {
            return Err(Error::ReadDelta {
                reason: format!("format {:?}, expected {:?}", delta.format, Self::FORMAT),
            });
        }
        Ok(delta)
    }

    /// Packages this layer declares (metadata files it adds or rewrites).
    pub fn packages_declared(&self) -> usize {
        self.added
            .values()
            .map(|record| match record {
                Record::Packages(found) => found.len(),
                _ => 0,
            })
            .sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Found {
    package: Package,
    layer: usize,
}

/// What the inventory keeps about one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    /// Packages the file declares.
    Packages(Vec<Found>),
    /// Licences of a Debian copyright file.
    Copyright(Vec<License>),
    /// `/usr/share/doc/<pkg>` links to this package's doc directory.
    DocLink(String),
    /// The file exists (dpkg `.list`).
    Present,
}

/// Packages present after the layers applied so far, with their attribution.
#[derive(Debug, Default)]
pub struct Inventory {
    catalogers: Catalogers,
    layers: Vec<LayerInfo>,
    records: BTreeMap<String, Record>,
    diagnostics: Vec<Diagnostic>,
}

/// Layer index given to packages of the layer being applied until it is committed.
const UNASSIGNED: usize = usize::MAX;

impl Inventory {
    /// An empty inventory running `catalogers`.
    pub fn new(catalogers: Catalogers) -> Self {
        Self {
            catalogers,
            ..Self::default()
        }
    }

    /// The layers applied so far, in order.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Files that could not be cataloged, in the order met.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Applies the next layer (see the module contract).
    pub fn apply_layer(
        &mut self,
        info: LayerInfo,
        layer: &mut dyn LayerView,
    ) -> Result<LayerSummary, Error> {
        let delta = self.layer_delta(layer)?;
        Ok(self.apply_delta(info, delta))
    }

    /// Reads `layer` as the next layer and returns what it changes, without
    /// changing the inventory. The delta is only valid for an inventory in
    /// exactly this state (the same layers below): callers that keep deltas
    /// between runs key them by the chain ID of the layer stack, not by the
    /// layer alone.
    pub fn layer_delta(&self, layer: &mut dyn LayerView) -> Result<LayerDelta, Error> {
        let mut applier = Applier {
            catalogers: self.catalogers,
            records: &self.records,
            layer: self.layers.len(),
            removed: Vec::new(),
            opaque: Vec::new(),
            added: BTreeMap::new(),
            diagnostics: Vec::new(),
            files_read: 0,
        };
        layer.walk(&mut applier)?;
        let Applier {
            removed,
            opaque,
            added,
            diagnostics,
            files_read,
            ..
        } = applier;
        Ok(LayerDelta {
            format: LayerDelta::FORMAT.to_owned(),
            removed,
            opaque,
            added,
            files_read,
            diagnostic_count: diagnostics.len(),
            diagnostics,
        })
    }

    /// Applies a delta made by [`Inventory::layer_delta`] on an inventory in
    /// this same state (or read back from where it was kept) as the next layer.
    pub fn apply_delta(&mut self, info: LayerInfo, delta: LayerDelta) -> LayerSummary {
        let index = self.layers.len();
        let LayerDelta {
            removed,
            opaque,
            added,
            files_read,
            diagnostic_count,
            diagnostics,
            ..
        } = delta;
        let mut summary = LayerSummary {
            layer: index,
            files_read,
            diagnostics: diagnostic_count,
            ..LayerSummary::default()
        };
        self.layers.push(info);
        self.diagnostics
            .extend(diagnostics.into_iter().map(|diagnostic| Diagnostic {
                layer: index,
                ..diagnostic
            }));
        self.commit(index, removed, opaque, added, &mut summary);
        summary
    }

    fn commit(
        &mut self,
        index: usize,
        removed: Vec<String>,
        opaque: Vec<String>,
        added: BTreeMap<String, Record>,
        summary: &mut LayerSummary,
    ) {
        // Packages of lower layers this layer took away, by identity.
        let mut displaced: HashMap<Identity, Vec<(String, usize)>> = HashMap::new();
        let mut doomed: Vec<String> = Vec::new();
        for path in &removed {
            if self.records.contains_key(path) {
                doomed.push(path.clone());
            }
            doomed.extend(keys_under(&self.records, path));
        }
        for dir in &opaque {
            doomed.extend(keys_under(&self.records, dir));
        }
        for path in doomed {
            if let Some(Record::Packages(found)) = self.records.remove(&path) {
                for Found { package, layer } in found {
                    displaced
                        .entry(Identity::of(&package))
                        .or_default()
                        .push((package.version, layer));
                }
            }
        }
        let mut reappeared: HashSet<Identity> = HashSet::new();
        for (path, mut record) in added {
            if let Record::Packages(found) = &mut record {
                for entry in found.iter_mut() {
                    let identity = Identity::of(&entry.package);
                    entry.layer = index;
                    match displaced.get(&identity) {
                        Some(previous) => {
                            let same_version = previous
                                .iter()
                                .filter(|(version, _)| *version == entry.package.version)
                                .map(|&(_, layer)| layer)
                                .min();
                            match same_version {
                                Some(layer) => entry.layer = layer,
                                None => summary.changed += 1,
                            }
                        }
                        None => summary.added += 1,
                    }
                    reappeared.insert(identity);
                }
            }
            self.records.insert(path, record);
        }
        summary.removed = displaced
            .keys()
            .filter(|identity| !reappeared.contains(*identity))
            .count();
    }

    /// The operating system described by the image's `os-release`, if any.
    pub fn operating_system(&self) -> Option<&Package> {
        OS_RELEASE_PATHS
            .iter()
            .find_map(|path| match self.records.get(*path) {
                Some(Record::Packages(found)) => found.first().map(|found| &found.package),
                _ => None,
            })
    }

    /// Every present package, joined and resolved, sorted by `bom_ref`.
    pub fn packages(&self) -> Vec<CatalogedPackage> {
        let os_record = OS_RELEASE_PATHS
            .iter()
            .find_map(|path| match self.records.get(*path) {
                Some(Record::Packages(found)) if !found.is_empty() => Some((*path, &found[0])),
                _ => None,
            });
        let distro = os_record.map(|(_, found)| {
            let os = &found.package;
            (
                os.name.as_str(),
                Some(os.version.as_str()).filter(|v| !v.is_empty()),
            )
        });
        let mut groups: BTreeMap<String, CatalogedPackage> = BTreeMap::new();
        if let Some((path, found)) = os_record {
            let os = &found.package;
            let bom_ref = if os.version.is_empty() {
                format!("os:{}", os.name)
            } else {
                format!("os:{}@{}", os.name, os.version)
            };
            groups.insert(
                bom_ref.clone(),
                CatalogedPackage {
                    package: os.clone(),
                    purl: None,
                    bom_ref,
                    layer: found.layer,
                    evidence: vec![path.to_owned()],
                    depends_on: Vec::new(),
                },
            );
        }
        for (path, record) in &self.records {
            let Record::Packages(found) = record else {
                continue;
            };
            if OS_RELEASE_PATHS.contains(&path.as_str()) {
                continue;
            }
            for Found { package, layer } in found {
                let Some(purl) = package.purl(distro).map(|purl| purl.to_string()) else {
                    continue;
                };
                let mut evidence = vec![path.clone()];
                if package.ecosystem == Ecosystem::Deb {
                    evidence.extend(self.dpkg_file_list(package));
                }
                match groups.get_mut(&purl) {
                    Some(group) => {
                        group.layer = group.layer.min(*layer);
                        group.evidence.extend(evidence);
                        for dependency in &package.dependencies {
                            if !group.package.dependencies.contains(dependency) {
                                group.package.dependencies.push(dependency.clone());
                            }
                        }
                        if group.package.licenses.is_empty() {
                            group.package.licenses = package.licenses.clone();
                        }
                    }
                    None => {
                        let mut package = package.clone();
                        if package.ecosystem == Ecosystem::Deb && package.licenses.is_empty() {
                            package.licenses = self.deb_licenses(&package.name);
                        }
                        groups.insert(
                            purl.clone(),
                            CatalogedPackage {
                                package,
                                purl: Some(purl.clone()),
                                bom_ref: purl,
                                layer: *layer,
                                evidence,
                                depends_on: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        let resolved: Vec<Vec<String>> = {
            let resolver = Resolver::new(&groups);
            groups
                .values()
                .map(|cataloged| {
                    let targets: BTreeSet<String> = cataloged
                        .package
                        .dependencies
                        .iter()
                        .filter_map(|dependency| resolver.resolve(&cataloged.package, dependency))
                        .filter(|target| *target != cataloged.bom_ref)
                        .map(str::to_owned)
                        .collect();
                    targets.into_iter().collect()
                })
                .collect()
        };
        let mut packages: Vec<CatalogedPackage> = groups.into_values().collect();
        for (cataloged, depends_on) in packages.iter_mut().zip(resolved) {
            cataloged.evidence.sort();
            cataloged.evidence.dedup();
            cataloged.depends_on = depends_on;
        }
        packages
    }

    fn dpkg_file_list(&self, package: &Package) -> Option<String> {
        let plain = format!("/var/lib/dpkg/info/{}.list", package.name);
        if self.records.contains_key(&plain) {
            return Some(plain);
        }
        let arch = package.arch.as_deref()?;
        let qualified = format!("/var/lib/dpkg/info/{}:{arch}.list", package.name);
        self.records.contains_key(&qualified).then_some(qualified)
    }

    fn deb_licenses(&self, name: &str) -> Vec<License> {
        let copyright = |doc_name: &str| match self
            .records
            .get(&format!("/usr/share/doc/{doc_name}/copyright"))
        {
            Some(Record::Copyright(licenses)) => Some(licenses.clone()),
            _ => None,
        };
        copyright(name)
            .or_else(
                || match self.records.get(&format!("/usr/share/doc/{name}")) {
                    Some(Record::DocLink(target)) => copyright(target),
                    _ => None,
                },
            )
            .unwrap_or_default()
    }
}

/// Catalogs a directory tree as one layer (a root filesystem, or a virtual
/// environment, or any directory).
pub fn catalog_tree(root: &Path, catalogers: Catalogers) -> Result<Inventory, Error> {
    let mut inventory = Inventory::new(catalogers);
    inventory.apply_layer(LayerInfo::default(), &mut DirTree::rootfs(root))?;
    Ok(inventory)
}

/// What makes two records the same package across versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity {
    ecosystem: Ecosystem,
    name: String,
    arch: Option<String>,
}

impl Identity {
    fn of(package: &Package) -> Self {
        Self {
            ecosystem: package.ecosystem,
            name: package.ecosystem.match_name(&package.name),
            arch: package.arch.clone(),
        }
    }
}

/// Keys of `records` strictly under directory `dir`.
fn keys_under(records: &BTreeMap<String, Record>, dir: &str) -> Vec<String> {
    let prefix = if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    };
    records
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(|(key, _)| key.starts_with(&prefix))
        .map(|(key, _)| key.clone())
        .collect()
}

fn has_under(records: &BTreeMap<String, Record>, dir: &str) -> bool {
    let prefix = if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    };
    records
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .next()
        .is_some_and(|(key, _)| key.starts_with(&prefix))
}

/// Collects one layer's changes against the committed state.
struct Applier<'s> {
    catalogers: Catalogers,
    records: &'s BTreeMap<String, Record>,
    layer: usize,
    /// Paths whose lower-layer state (the path and everything under it) is gone.
    removed: Vec<String>,
    /// Directories whose lower-layer contents are gone.
    opaque: Vec<String>,
    /// New state from this layer.
    added: BTreeMap<String, Record>,
    diagnostics: Vec<Diagnostic>,
    files_read: usize,
}

impl Applier<'_> {
    /// The entry at `path` replaces whatever lower layers had there.
    fn replace(&mut self, path: &str) {
        self.added.remove(path);
        if !self.records.is_empty()
            && (self.records.contains_key(path) || has_under(self.records, path))
        {
            self.removed.push(path.to_owned());
        }
    }
}

impl LayerVisitor for Applier<'_> {
    fn wants_dir(&self, path: &str) -> bool {
        self.catalogers.wants_dir(path)
    }

    fn wants_executables(&self) -> bool {
        self.catalogers.wants_executables()
    }

    fn visit(&mut self, entry: LayerEntry<'_>) -> Result<(), Error> {
        let path = entry.path;
        match entry.kind {
            EntryKind::Whiteout => self.replace(path),
            EntryKind::Opaque => {
                if has_under(self.records, path) {
                    self.opaque.push(path.to_owned());
                }
            }
            EntryKind::Directory => {
                // A directory over a lower file replaces it; over a directory it merges.
                self.added.remove(path);
                if self.records.contains_key(path) {
                    self.removed.push(path.to_owned());
                }
            }
            EntryKind::Other => self.replace(path),
            EntryKind::Symlink { target } => {
                self.replace(path);
                if self.catalogers.classify_symlink(path) == Some(Target::DebDocLink)
                    && let Some(linked) = doc_link_target(target)
                {
                    self.added
                        .insert(path.to_owned(), Record::DocLink(linked.to_owned()));
                }
            }
            EntryKind::Hardlink { target } => {
                self.replace(path);
                if self.catalogers.classify_file(path, true).is_some() {
                    let linked = self
                        .added
                        .get(target)
                        .or_else(|| self.records.get(target))
                        .cloned();
                    if let Some(mut record) = linked {
                        if let Record::Packages(found) = &mut record {
                            for entry in found {
                                entry.layer = UNASSIGNED;
                            }
                        }
                        self.added.insert(path.to_owned(), record);
                    }
                }
            }
            EntryKind::File {
                executable,
                content,
            } => {
                self.replace(path);
                if let Some(target) = self.catalogers.classify_file(path, executable) {
                    self.files_read += 1;
                    match catalog::read(target, path, content, self.catalogers) {
                        Ok(Parsed::Packages(packages)) => {
                            if !packages.is_empty() {
                                let found = packages
                                    .into_iter()
                                    .map(|package| Found {
                                        package,
                                        layer: UNASSIGNED,
                                    })
                                    .collect();
                                self.added.insert(path.to_owned(), Record::Packages(found));
                            }
                        }
                        Ok(Parsed::Copyright(licenses)) => {
                            self.added
                                .insert(path.to_owned(), Record::Copyright(licenses));
                        }
                        Ok(Parsed::Present) => {
                            self.added.insert(path.to_owned(), Record::Present);
                        }
                        Err(error) => self.diagnostics.push(Diagnostic {
                            layer: self.layer,
                            path: path.to_owned(),
                            error,
                        }),
                    }
                }
            }
        }
        Ok(())
    }
}

/// The package whose doc directory a `/usr/share/doc/<pkg>` symlink points at
/// (`libfoo1`, `../libfoo1/`, `/usr/share/doc/libfoo1`).
fn doc_link_target(target: &str) -> Option<&str> {
    let trimmed = target.trim_end_matches('/');
    let name = trimmed
        .strip_prefix("/usr/share/doc/")
        .or_else(|| trimmed.strip_prefix("../"))
        .or_else(|| trimmed.strip_prefix("./"))
        .unwrap_or(trimmed);
    (!name.is_empty() && !name.contains('/') && name != "..").then_some(name)
}

/// Resolves stated dependencies to `bom_ref`s of present packages.
struct Resolver<'g> {
    by_name: HashMap<(Ecosystem, String), Vec<&'g str>>,
    exact: HashMap<(Ecosystem, &'g str, &'g str), &'g str>,
    npm_locations: HashMap<&'g str, &'g str>,
}

impl<'g> Resolver<'g> {
    fn new(groups: &'g BTreeMap<String, CatalogedPackage>) -> Self {
        let mut by_name: HashMap<(Ecosystem, String), Vec<&'g str>> = HashMap::new();
        let mut exact = HashMap::new();
        let mut npm_locations = HashMap::new();
        for group in groups.values() {
            let package = &group.package;
            let bom_ref = group.bom_ref.as_str();
            by_name
                .entry((
                    package.ecosystem,
                    package.ecosystem.match_name(&package.name),
                ))
                .or_default()
                .push(bom_ref);
            exact.insert(
                (
                    package.ecosystem,
                    package.name.as_str(),
                    package.version.as_str(),
                ),
                bom_ref,
            );
            if let Some(location) = &package.location {
                npm_locations.insert(location.as_str(), bom_ref);
            }
        }
        // Virtual names after real ones: a package named X wins over one providing X.
        for group in groups.values() {
            let package = &group.package;
            for name in &package.provides {
                by_name
                    .entry((package.ecosystem, package.ecosystem.match_name(name)))
                    .or_default()
                    .push(group.bom_ref.as_str());
            }
        }
        Self {
            by_name,
            exact,
            npm_locations,
        }
    }

    fn resolve(&self, from: &Package, dependency: &Dependency) -> Option<&'g str> {
        match dependency {
            Dependency::Exact { name, version } => self
                .exact
                .get(&(from.ecosystem, name.as_str(), version.as_str()))
                .copied(),
            Dependency::AnyOf(names) => names.iter().find_map(|name| {
                if from.ecosystem == Ecosystem::Npm
                    && let Some(location) = &from.location
                    && let Some(found) = self.nearest_node_module(location, name)
                {
                    return Some(found);
                }
                self.by_name
                    .get(&(from.ecosystem, from.ecosystem.match_name(name)))
                    .and_then(|candidates| candidates.first().copied())
            }),
        }
    }

    /// Node's lookup: `<dir>/node_modules/<name>` from the package's own
    /// directory up to the root.
    fn nearest_node_module(&self, location: &str, name: &str) -> Option<&'g str> {
        let mut directory = location;
        loop {
            let candidate = if directory == "/" {
                format!("/node_modules/{name}")
            } else {
                format!("{directory}/node_modules/{name}")
            };
            if let Some(found) = self.npm_locations.get(candidate.as_str()) {
                return Some(found);
            }
            if directory == "/" {
                return None;
            }
            directory = catalog::parent(directory);
        }
    }
}
