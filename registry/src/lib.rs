//! kiln's OCI distribution client: references, auth, verified pull, push, mount and
//! referrers.
