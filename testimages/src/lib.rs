//! Test fixtures and harness for kiln: base images made from Debian packages and a
//! real registry started on loopback.
