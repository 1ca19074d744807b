/**
 * What a piece of infrastructure hands to the code that uses it: the variables that name it,
 * and the grant that lets a role use it. The store and the bus are wired this way, so the
 * gateway and the functions get the same variables whichever store the deployment runs on.
 */
import type * as iam from 'aws-cdk-lib/aws-iam';

export interface Wiring {
  readonly environment: Record<string, string>;
  grant(grantee: iam.IGrantable): void;
}

/** Several wirings as one: variables merged (later ones win), every grant made. */
export function combine(...wirings: Wiring[]): Wiring {
  return {
    environment: Object.assign({}, ...wirings.map((wiring) => wiring.environment)),
    grant: (grantee) => {
      for (const wiring of wirings) wiring.grant(grantee);
    },
  };
}
