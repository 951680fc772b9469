//! The `klingwatch-mock` binary: parse [`klingwatch_mock::MockArgs`] and run the emulator
//! until SIGINT/SIGTERM.

use clap::Parser;

fn main() {
    let args = klingwatch_mock::MockArgs::parse();
    let rt = match args.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("klingwatch-mock: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(klingwatch_mock::run(args)) {
        eprintln!("klingwatch-mock: {e}");
        std::process::exit(1);
    }
}
