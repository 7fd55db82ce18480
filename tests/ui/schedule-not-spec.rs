use dual_mode::DualMode;
use dual_mode::jobs::Schedule;

#[derive(DualMode)]
struct Service {
    url: String,
    #[dual_mode(shared)]
    http: reqwest::Client,
}

fn schedule(service: &Service) {
    let _ = Schedule::for_spec("hourly", "0 * * * *", service);
}

fn main() {
    let _ = schedule;
}
