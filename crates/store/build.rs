// The migrations are embedded by `sqlx::migrate!`, which cannot tell Cargo to watch them on a
// stable compiler: without this, a new or edited migration file would not be built in.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
