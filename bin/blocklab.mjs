#!/usr/bin/env node
// The `blocklab` command: runs the TypeScript CLI through tsx's loader, so it works right
// after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/main/cli/main.ts');
