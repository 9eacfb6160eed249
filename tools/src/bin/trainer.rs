fn main() {
    eprintln!("trainer: not built yet");
    std::process::exit(2);
}
