//! The `RUN` executor: a namespace sandbox for one build step.
