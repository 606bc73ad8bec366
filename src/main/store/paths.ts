/**
 * Where the store lives by default: the folder Electron's `app.getPath('userData')` gives an
 * app named "blocklab", computed without Electron so the CLI and the server agree with the app.
 */
import { homedir } from 'node:os';
import { isAbsolute, posix, resolve, win32 } from 'node:path';

export const STORE_FILE_NAME = 'blocklab.sqlite';
const APP_NAME = 'blocklab';

/**
 * `$BLOCKLAB_STORE` when set (resolved against the working folder), else
 *  - Linux and others: `${XDG_CONFIG_HOME:-~/.config}/blocklab/blocklab.sqlite`
 *  - macOS: `~/Library/Application Support/blocklab/blocklab.sqlite`
 *  - Windows: `%APPDATA%\blocklab\blocklab.sqlite`
 * The parameters exist for tests; callers pass nothing.
 */
export function defaultStorePath(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = homedir(),
): string {
  const override = env.BLOCKLAB_STORE;
  if (override) return resolve(override);
  return posixOrWin(platform).join(userDataFolder(env, platform, home), STORE_FILE_NAME);
}

/** The per-user data folder of an Electron app named "blocklab". */
export function userDataFolder(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = homedir(),
): string {
  switch (platform) {
    case 'win32':
      return win32.join(env.APPDATA || win32.join(home, 'AppData', 'Roaming'), APP_NAME);
    case 'darwin':
      return posix.join(home, 'Library', 'Application Support', APP_NAME);
    default: {
      // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
      const xdg = env.XDG_CONFIG_HOME;
      const config = xdg && isAbsolute(xdg) ? xdg : posix.join(home, '.config');
      return posix.join(config, APP_NAME);
    }
  }
}

function posixOrWin(platform: NodeJS.Platform) {
  return platform === 'win32' ? win32 : posix;
}
