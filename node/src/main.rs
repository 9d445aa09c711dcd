fn main() -> std::process::ExitCode {
    poolgate_node::cli::main()
}
