//! poolgate load generator (placeholder until the load-test issue lands: fleet load generator,
//! scenarios against baselines in one run, report with plots).

fn main() {
    eprintln!("poolgate-loadtests: not implemented yet; see the load-test issue");
}
