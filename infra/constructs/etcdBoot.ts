/**
 * The boot script of an etcd member instance (EC2 user data), as a pure function so tests can
 * read it and run `bash -n` on it. On every boot of a (possibly replacement) instance:
 *
 * 1. attach the member's own network interface (fixed private IP: the member's identity in the
 *    cluster) and its own EBS volume (its data), retrying while a previous instance lets go;
 * 2. format the volume only if it is blank, mount it on /var/lib/etcd;
 * 3. install the pinned etcd release, checked against the release's SHA256SUMS (or a pinned hash);
 * 4. run etcd under systemd, bound to the member's IP;
 * 5. tell CloudFormation the member is up: at once on the first boot of a new cluster (members
 *    start one after another and none is healthy alone), after `endpoint health` otherwise, so
 *    an update replaces the next member only once this one has rejoined.
 */

export interface EtcdMemberBoot {
  /** Member name, e.g. `m0`. */
  name: string;
  /** Private IP of the member's network interface. */
  ip: string;
  networkInterfaceId: string;
  volumeId: string;
  /** `name=http://ip:peerPort` for every member. */
  initialCluster: string;
  clusterToken: string;
  version: string;
  /** etcd release architecture: `arm64` or `amd64`. */
  architecture: 'arm64' | 'amd64';
  clientPort: number;
  peerPort: number;
  /** SHA-256 of the release tarball; checked against the release's SHA256SUMS when absent. */
  sha256?: string;
  /** CloudFormation resource to signal (the member's Auto Scaling group). */
  signal: { stack: string; resource: string; region: string };
}

export function etcdBootScript(m: EtcdMemberBoot): string[] {
  const tarball = `etcd-${m.version}-linux-${m.architecture}.tar.gz`;
  const release = `https://github.com/etcd-io/etcd/releases/download/${m.version}`;
  const checksum = m.sha256
    ? [`echo "${m.sha256}  /tmp/${tarball}" | sha256sum -c -`]
    : [
        `curl -fsSL --retry 5 -o /tmp/SHA256SUMS ${release}/SHA256SUMS`,
        `grep " ${tarball}$" /tmp/SHA256SUMS | sed 's#  #  /tmp/#' | sha256sum -c -`,
      ];
  const peer = `http://${m.ip}:${m.peerPort}`;
  const client = `http://${m.ip}:${m.clientPort}`;
  return [
    'set -euo pipefail',
    'exec > >(tee -a /var/log/streamheal-etcd-boot.log) 2>&1',
    `signal() { /opt/aws/bin/cfn-signal -e "$1" --stack '${m.signal.stack}' --resource '${m.signal.resource}' --region '${m.signal.region}' || true; }`,
    "trap 'signal 1' ERR",
    'dnf install -y -q aws-cfn-bootstrap',
    'imds_token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
    'imds() { curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "http://169.254.169.254/latest/meta-data/$1"; }',
    'instance=$(imds instance-id)',
    `region='${m.signal.region}'`,
    'retry() { for attempt in $(seq 1 60); do "$@" && return 0; sleep 5; done; return 1; }',
    'attached() { [ "$(aws ec2 describe-network-interfaces --region "$region" --network-interface-ids "$1" --query "NetworkInterfaces[0].Attachment.InstanceId" --output text)" = "$instance" ]; }',
    `if ! attached '${m.networkInterfaceId}'; then retry aws ec2 attach-network-interface --region "$region" --network-interface-id '${m.networkInterfaceId}' --instance-id "$instance" --device-index 1; fi`,
    'volume_attached() { [ "$(aws ec2 describe-volumes --region "$region" --volume-ids "$1" --query "Volumes[0].Attachments[0].InstanceId" --output text)" = "$instance" ]; }',
    `if ! volume_attached '${m.volumeId}'; then retry aws ec2 attach-volume --region "$region" --volume-id '${m.volumeId}' --instance-id "$instance" --device /dev/sdf; fi`,
    `serial='${m.volumeId}'; serial="\${serial/-/}"`,
    'device=""',
    'for attempt in $(seq 1 60); do device=$(readlink -f "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_$serial" || true); [ -b "$device" ] && break; sleep 2; done',
    '[ -b "$device" ]',
    'blkid "$device" >/dev/null || mkfs.xfs -q "$device"',
    'mkdir -p /var/lib/etcd',
    'mountpoint -q /var/lib/etcd || mount "$device" /var/lib/etcd',
    'first_boot=false; [ -d /var/lib/etcd/data/member ] || first_boot=true',
    `for attempt in $(seq 1 60); do ip -4 addr | grep -q " ${m.ip}/" && break; sleep 2; done`,
    `ip -4 addr | grep -q " ${m.ip}/"`,
    `curl -fsSL --retry 5 -o /tmp/${tarball} ${release}/${tarball}`,
    ...checksum,
    `tar -xzf /tmp/${tarball} -C /tmp`,
    `install -m 0755 /tmp/etcd-${m.version}-linux-${m.architecture}/etcd /tmp/etcd-${m.version}-linux-${m.architecture}/etcdctl /usr/local/bin/`,
    'id etcd >/dev/null 2>&1 || useradd --system --home-dir /var/lib/etcd --shell /sbin/nologin etcd',
    'chown -R etcd:etcd /var/lib/etcd',
    "cat > /etc/systemd/system/etcd.service <<'UNIT'",
    '[Unit]',
    'Description=etcd member of streamheal',
    'After=network-online.target',
    'Wants=network-online.target',
    '[Service]',
    'User=etcd',
    'Type=notify',
    [
      'ExecStart=/usr/local/bin/etcd',
      `--name ${m.name}`,
      '--data-dir /var/lib/etcd/data',
      `--listen-peer-urls ${peer}`,
      `--initial-advertise-peer-urls ${peer}`,
      `--listen-client-urls ${client},http://127.0.0.1:${m.clientPort}`,
      `--advertise-client-urls ${client}`,
      `--initial-cluster ${m.initialCluster}`,
      `--initial-cluster-token ${m.clusterToken}`,
      '--initial-cluster-state new',
      '--auto-compaction-mode periodic',
      '--auto-compaction-retention 1h',
      '--quota-backend-bytes 4294967296',
    ].join(' '),
    'Restart=always',
    'RestartSec=2',
    'LimitNOFILE=65536',
    '[Install]',
    'WantedBy=multi-user.target',
    'UNIT',
    'systemctl daemon-reload',
    // --no-block: a member of a new cluster is not ready until a quorum of peers is up.
    'systemctl enable etcd',
    'systemctl start --no-block etcd',
    `if [ "$first_boot" = false ]; then retry /usr/local/bin/etcdctl --endpoints=http://127.0.0.1:${m.clientPort} endpoint health; fi`,
    'signal 0',
  ];
}
