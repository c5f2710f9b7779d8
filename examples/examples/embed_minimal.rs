//! The shortest useful program: a base image from a root file system tarball, and a
//! container from it that says hello.
//!
//! ```sh
//! cargo run -p kleene-examples --example embed_minimal -- POOL/kleene ROOTFS.tar
//! ```

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{Attach, BaseSource, Config, CreateContainer, CreateImage, Engine, Events};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First: this program also runs its containers' monitors (see kleene_core::init).
    kleene_core::init();
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(tarball)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: embed_minimal ROOT-DATASET ROOTFS.tar");
    };
    let engine = Engine::open(Config::new(DatasetName::new(root)?)).await?;
    let source = BaseSource::Fetch {
        url: tarball,
        sha256: None,
    };
    let image = engine
        .create_base_image(CreateImage::new(source), Events::none())
        .await?;
    let container = engine
        .create_container(
            CreateContainer::new(image.id.to_string())
                .cmd(["/bin/echo", "hello from a kleene container"]),
        )
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
    engine.remove_image(image.id.as_str()).await?;
    std::process::exit(code);
}
