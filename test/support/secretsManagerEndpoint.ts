/**
 * A stand-in for the Secrets Manager API on 127.0.0.1 (no AWS or LocalStack here): AWS JSON 1.1,
 * `X-Amz-Target: secretsmanager.GetSecretValue`, answers in the documented shape, so the real
 * @aws-sdk/client-secrets-manager client is exercised over a socket. It is not Secrets Manager:
 * no signatures checked, no versions or stages beyond AWSCURRENT.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class SecretsManagerEndpoint {
  readonly secrets = new Map<string, string>();
  calls = 0;
  port = 0;
  private readonly server: Server;

  private constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const answer = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
          res.end(JSON.stringify(body));
        };
        this.calls++;
        if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue') {
          return answer(400, { __type: 'UnknownOperationException', message: 'unknown operation' });
        }
        if (!String(req.headers.authorization ?? '').includes('/secretsmanager/aws4_request')) {
          return answer(400, {
            __type: 'MissingAuthenticationTokenException',
            message: 'no SigV4',
          });
        }
        const { SecretId } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          SecretId: string;
        };
        const value = this.secrets.get(SecretId);
        if (value === undefined) {
          return answer(400, {
            __type: 'ResourceNotFoundException',
            message: "Secrets Manager can't find the specified secret.",
          });
        }
        answer(200, {
          ARN: SecretId,
          Name: SecretId.split(':').at(-1),
          SecretString: value,
          VersionId: 'v1',
          VersionStages: ['AWSCURRENT'],
          CreatedDate: Date.now() / 1000,
        });
      });
    });
  }

  static async start(): Promise<SecretsManagerEndpoint> {
    const endpoint = new SecretsManagerEndpoint();
    const server = endpoint.server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    endpoint.port = (server.address() as AddressInfo).port;
    return endpoint;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
