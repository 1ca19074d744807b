/**
 * CDK app entry: `cdk synth` / `cdk deploy` run it (cdk.json: the compiled dist/infra/app.js,
 * after `npm run build`). Props come from context (infra/config.ts), cdk-nag's AwsSolutions
 * checks run over every stack.
 *
 *   npx cdk synth                    # store=dynamodb
 *   npx cdk synth -c store=etcd
 */
import { App } from 'aws-cdk-lib';
import { propsFromContext } from './config.js';
import { applyNagChecks } from './nag.js';
import { buildStreamheal } from './streamhealApp.js';

const app = new App();
buildStreamheal(app, propsFromContext(app.node));
applyNagChecks(app);
app.synth();
