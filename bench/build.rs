//! Keeps the libsodium that conduit links statically (for its CURVE boxes) to
//! conduit: without this, the linker exports its symbols because libzmq.so
//! refers to the same names, and libzmq's CURVE calls would run conduit's copy
//! instead of the system libsodium libzmq was built with, so `libzmq-curve`
//! would not be libzmq as installed.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--exclude-libs,ALL");
}
