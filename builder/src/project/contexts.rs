//! The images a Dockerfile refers to.
//!
//! [`image_references`] lists what the needed stages of a resolved Dockerfile take
//! from outside the Dockerfile: `FROM` images, `COPY --from=` images and `RUN
//! --mount` `from=` images (`scratch` excluded). The project planner maps them to
//! services (graph edges); named contexts among them are resolved by the solver
//! from [`crate::build::BuildRequest::extra_contexts`].

use std::collections::BTreeSet;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::dockerfile::{self, ResolveOptions};

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
