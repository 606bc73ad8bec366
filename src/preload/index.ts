/**
 * The preload: exposes the app's API to the renderer as `window.blocklab` through
 * contextBridge — two functions and nothing else (no ipcRenderer, no Node). Main validates
 * every payload and its sender again.
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { ApiPush, ApiResponse, BlocklabBridge } from '../shared/api';

const bridge: BlocklabBridge = {
  call: (request) => ipcRenderer.invoke('blocklab:api', request) as Promise<ApiResponse>,
  onPush: (listener) => {
    const wrapped = (_e: IpcRendererEvent, push: ApiPush) => listener(push);
    ipcRenderer.on('blocklab:push', wrapped);
    return () => void ipcRenderer.off('blocklab:push', wrapped);
  },
};

contextBridge.exposeInMainWorld('blocklab', bridge);
