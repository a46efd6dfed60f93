//! Integration tests for kiln-registry: adversarial cases against an in-process fake
//! registry, and end-to-end cases against Debian's `docker-registry`.

mod adversarial;
mod fake;
mod images;
mod real;
