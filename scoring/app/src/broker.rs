//! `vigil dev-broker`: librdkafka's mock cluster as a process of its own: a Kafka-protocol
//! broker on a real TCP port, in memory, with the v1 topics created. For tests and demos on
//! machines without Kafka; what it holds is gone when it stops.

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;
use vigil_schema::topics;

#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
}

/// A started broker; it stops when dropped.
pub struct DevBroker {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl std::fmt::Debug for DevBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevBroker")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl DevBroker {
    pub fn start(partitions: i32) -> Result<Self> {
        let cluster = MockCluster::new(1).context("starting the embedded broker")?;
        for topic in topics::ALL {
            cluster
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating {topic}"))?;
        }
        Ok(Self { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

pub fn run(args: &BrokerArgs) -> Result<()> {
    let broker = DevBroker::start(args.partitions)?;
    // The first line is the address, for scripts and tests to read.
    println!("{}", broker.bootstrap_servers());
    eprintln!(
        "embedded Kafka broker with {} partitions a topic; stop with Ctrl-C",
        args.partitions
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    drop(broker);
    Ok(())
}
