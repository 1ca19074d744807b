/**
 * nftables drop rules for fault tests (a path cut silently, SYNs that go unanswered). Needs
 * `nft` and root: .ci/run installs nftables; tests fail, never skip, without it. Every rule
 * lives in a table of this process's own, removed by `removeNftRules` (call it in afterEach).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** `nft` from PATH, else where Debian puts it (root's PATH may lack the sbin folders). */
const NFT = ['/usr/sbin/nft', '/sbin/nft'].find((p) => existsSync(p)) ?? 'nft';
const TABLE = `shtest_${process.pid}`;

function nft(args: string[]): string {
  return execFileSync(NFT, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function requireNft(): void {
  try {
    nft(['--version']);
  } catch (error) {
    throw new Error(
      'this test needs nftables (`nft`) and root: `apt-get install -y nftables` ' +
        `(.ci/run installs it). ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

/**
 * Drops every TCP packet to `port` as it arrives. The input hook, not output: a drop in output
 * fails the sender's transmit locally, so TCP keeps the data as not-sent (notsent_bytes grows,
 * unacked and retransmits stay 0); a drop in input is what a cut path looks like to the sender
 * (sent, never acknowledged, retransmitted).
 */
export function dropInputTo(port: number): void {
  removeNftRules();
  nft(['add', 'table', 'inet', TABLE]);
  nft(['add', 'chain', 'inet', TABLE, 'in', '{ type filter hook input priority 0; }']);
  nft(['add', 'rule', 'inet', TABLE, 'in', 'tcp', 'dport', String(port), 'drop']);
}

export function removeNftRules(): void {
  try {
    nft(['delete', 'table', 'inet', TABLE]);
  } catch {
    /* not there */
  }
}
