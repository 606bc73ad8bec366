/**
 * The compute-backend choice the Train, Eval and Chat cells offer: what each option says, which
 * are unavailable and why, read from the Doctor's findings (app.info). Pure: the component
 * (components/BackendPicker.svelte) asks for app.info.
 */
import type { AppInfo } from '../../../shared/api';
import type { BackendChoice } from '../../../shared/jobs';

type BackendFacts = AppInfo['backend'];

export interface BackendOption {
  value: BackendChoice;
  label: string;
  disabled: boolean;
  /** why it is unavailable, or what it is */
  title: string;
}

const ORDER: Exclude<BackendChoice, 'auto'>[] = ['webgpu', 'tensorflow-gpu', 'wasm', 'tensorflow-cpu', 'cpu'];
const NAMES: Record<Exclude<BackendChoice, 'auto'>, string> = {
  webgpu: 'WebGPU',
  'tensorflow-gpu': 'CUDA (tfjs-node-gpu)',
  wasm: 'WebAssembly (CPU)',
  'tensorflow-cpu': 'libtensorflow (CPU)',
  cpu: 'JavaScript (CPU, slowest)',
};

/** The options, in the order of the engine's preference; unavailable ones are disabled with the reason. */
export function backendOptions(facts: BackendFacts | null): BackendOption[] {
  const auto: BackendOption = {
    value: 'auto',
    label: facts?.active ? `auto (${facts.active})` : 'auto',
    disabled: false,
    title: 'the engine picks: a GPU when it has one, else WebAssembly',
  };
  return [
    auto,
    ...ORDER.map((name) => {
      const c = facts?.candidates.find((x) => x.name === name);
      const software = name === 'webgpu' ? facts?.webgpuAdapter?.software : null;
      const available = c ? c.available : true;
      const label = `${NAMES[name]}${software ? ' — software adapter, slow' : ''}${available ? '' : ' — unavailable'}`;
      return { value: name, label, disabled: !available, title: c?.reason ?? '' };
    }),
  ];
}

/** A line under the picker when the choice needs one (a software adapter, an unavailable backend). */
export function backendNote(choice: BackendChoice | undefined, facts: BackendFacts | null): string {
  if (!facts || !choice || choice === 'auto') return '';
  const c = facts.candidates.find((x) => x.name === choice);
  if (c && !c.available) return `${choice} is not available here: ${c.reason ?? 'see Doctor'}`;
  const a = facts.webgpuAdapter;
  if (choice === 'webgpu' && a?.software) return `${a.software}: runs on the CPU, several times slower than WebAssembly (useful for checking, not for speed)`;
  return '';
}
