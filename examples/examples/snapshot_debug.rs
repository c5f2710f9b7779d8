//! Kleene's failed-build flow: a build that fails is kept as `<name>:failed`; a container
//! started from its last snapshot shows the state just before the failing step, and a new
//! build resumes from that snapshot.
//!
//! ```sh
//! cargo run -p kleene-examples --example snapshot_debug -- POOL/kleene ROOTFS.tar
//! ```

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{
    Attach, BaseSource, BuildRequest, Config, CoreError, CreateContainer, CreateImage, Engine,
    Event, Events,
};

const BROKEN: &str = "FROM busybox
RUN mkdir -p /srv/app && echo 'step one' > /srv/app/one
RUN echo 'step two' > /srv/app/two
RUN test -e /srv/app/config || { echo 'no /srv/app/config' >&2; exit 3; }
RUN echo 'never reached' > /srv/app/three
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First: this program also runs its containers' monitors (see kleene_core::init).
    kleene_core::init();
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(tarball)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: snapshot_debug ROOT-DATASET ROOTFS.tar");
    };
    let engine = Engine::open(Config::new(DatasetName::new(root)?)).await?;
    let base = CreateImage::new(BaseSource::Fetch {
        url: tarball,
        sha256: None,
    })
    .tag("busybox");
    engine.create_base_image(base, Events::none()).await?;

    let context = tempfile::tempdir()?;
    std::fs::write(context.path().join("Dockerfile"), BROKEN)?;
    let show = Events::new(|e| match e {
        Event::BuildStep { n, total, text } => println!("Step {n}/{total} : {text}"),
        Event::SnapshotCreated { snapshot } => println!("--> Snapshot created: {snapshot}"),
        Event::Output { data, .. } => println!("{data}"),
        _ => {}
    });

    // 1. The build fails at its third RUN; the state is kept as app:failed.
    let request = BuildRequest::new(context.path()).tag("app");
    let snapshot = match engine.build(request, show.clone()).await {
        Ok(_) => anyhow::bail!("the build was meant to fail"),
        Err(CoreError::BuildFailed {
            image_id,
            snapshot: Some(snapshot),
            reason,
        }) => {
            println!("build failed ({reason}); kept as app:failed ({image_id}), last snapshot {snapshot}");
            snapshot
        }
        Err(other) => return Err(other.into()),
    };
    // `@<id>` lives in app:failed; a cached step's snapshot names its image already.
    let at = if snapshot.starts_with('@') {
        format!("app:failed{snapshot}")
    } else {
        snapshot
    };

    // 2. A container from that snapshot: what the failing step saw.
    let debug = engine
        .create_container(CreateContainer::new(at.clone()).cmd(["/bin/ls", "-l", "/srv/app"]))
        .await?;
    println!("$ ls -l /srv/app   # in a container from {at}");
    let code = engine
        .start_container(debug.id.as_str(), Attach::Inherit)
        .await?
        .wait()
        .await?
        .code;
    engine.remove_container(debug.id.as_str(), false).await?;
    anyhow::ensure!(code == 0, "ls exited with {code}");

    // 3. The fix, built from the snapshot: the first two steps are not run again.
    let fixed = format!(
        "FROM {at}\nRUN echo 'debug = false' > /srv/app/config\nRUN cat /srv/app/one /srv/app/two /srv/app/config\n"
    );
    std::fs::write(context.path().join("Dockerfile"), fixed)?;
    let request = BuildRequest::new(context.path()).tag("app:latest");
    let built = engine.build(request, show).await?;
    println!("resumed: app:latest is {}", built.image.id);
    Ok(())
}
