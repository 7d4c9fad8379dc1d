//! The `yitong` binary; everything it does lives in the library.

fn main() -> std::process::ExitCode {
    yitong::main()
}
