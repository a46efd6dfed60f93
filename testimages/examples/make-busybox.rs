//! Writes the `busybox` base image (made from Debian's busybox-static) as an
//! OCI layout at the path given, for the README's demo.

fn main() {
    let Some(dest) = std::env::args_os().nth(1) else {
        eprintln!("usage: make-busybox DIR");
        std::process::exit(2);
    };
    match kiln_testimages::images::build_busybox(std::path::Path::new(&dest)) {
        Ok(image) => println!("{} {}", image.name, image.manifest_digest),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    }
}
