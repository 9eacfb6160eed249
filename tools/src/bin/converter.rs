fn main() {
    eprintln!("converter: not built yet");
    std::process::exit(2);
}
