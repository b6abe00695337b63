//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds them
//! at compile time, but cargo does not know they are inputs.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
