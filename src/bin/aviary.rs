//! The Aviary controller.
fn main() {
    println!("aviary controller: not yet implemented");
}
