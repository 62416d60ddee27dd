//! A `wasi:cli` command, not an HTTP handler: deploying it must be refused.
fn main() {
    println!("I am a command");
}
