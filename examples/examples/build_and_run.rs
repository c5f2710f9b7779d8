//! Builds a Dockerfile on a base image and runs the result, rendering the build's event
//! stream the way `klee build` prints it.
//!
//! ```sh
//! cargo run -p kleene-examples --example build_and_run -- POOL/kleene ROOTFS.tar [CONTEXT]
//! ```
//!
//! The base image is made from `ROOTFS.tar` and tagged `busybox`, which `CONTEXT`'s
//! Dockerfile names in its FROM (default: `examples/hello`). The built image is tagged
//! `hello:latest`, run once, and left for you to look at (`klee lsi`).

use std::path::PathBuf;

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{
    Attach, BaseSource, BuildRequest, Config, CreateContainer, CreateImage, Engine, Event, Events,
    OutputStream,
};

/// One line per event, as klee prints them.
fn render(event: Event) {
    match event {
        Event::BuildStarted { id } => println!("Started to build image with ID {id}"),
        Event::BuildStep { n, total, text } => println!("Step {n}/{total} : {text}"),
        Event::Output {
            stream: OutputStream::Stdout,
            data,
        } => println!("{data}"),
        Event::Output {
            stream: OutputStream::Stderr,
            data,
        } => eprintln!("{data}"),
        Event::SnapshotCreated { snapshot } => println!("--> Snapshot created: {snapshot}"),
        Event::StepCached { snapshot } => println!("--> Using cache: {snapshot}"),
        Event::BuildFailed {
            snapshot, reason, ..
        } => {
            println!("{reason}");
            if let Some(s) = snapshot {
                println!("image build failed at snapshot {s}");
            }
        }
        Event::ImageCreated { id } => println!("image created: {id}"),
        Event::Status(line) => println!("{line}"),
        _ => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First: this program also runs its containers' monitors (see kleene_core::init).
    kleene_core::init();
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(tarball)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: build_and_run ROOT-DATASET ROOTFS.tar [CONTEXT]");
    };
    let context = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hello"));
    let engine = Engine::open(Config::new(DatasetName::new(root)?)).await?;
    let events = Events::new(render);

    let base = CreateImage::new(BaseSource::Fetch {
        url: tarball,
        sha256: None,
    })
    .tag("busybox");
    engine.create_base_image(base, events.clone()).await?;

    let request = BuildRequest::new(context).tag("hello:latest");
    let built = engine.build(request, events).await?;
    println!(
        "built {} in {} steps ({} RUN ran, {} steps from the cache)",
        built.image.id, built.steps, built.runs, built.cached
    );

    // The image's own CMD, its output on our terminal.
    let container = engine
        .create_container(CreateContainer::new("hello:latest"))
        .await?;
    let code = engine
        .start_container(container.id.as_str(), Attach::Inherit)
        .await?
        .wait()
        .await?
        .code;
    engine
        .remove_container(container.id.as_str(), false)
        .await?;
    anyhow::ensure!(code == 0, "the container exited with {code}");
    Ok(())
}
