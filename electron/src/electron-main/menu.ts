// The native menu: File (open a workspace folder, quit), View, Help.
import { app, type BrowserWindow, dialog, Menu, type MenuItemConstructorOptions, type OpenDialogOptions, shell } from "electron";

export interface MenuActions {
  openWorkspace(folder: string): Promise<void>;
  dataHome: string;
  logsDir: string;
}

async function chooseWorkspace(window: BrowserWindow | null, actions: MenuActions): Promise<void> {
  const options: OpenDialogOptions = { title: "Open Workspace Folder", properties: ["openDirectory", "createDirectory"] };
  const result = window ? await dialog.showOpenDialog(window, options) : await dialog.showOpenDialog(options);
  const folder = result.filePaths[0];
  if (result.canceled || !folder) return;
  try {
    await actions.openWorkspace(folder);
  } catch (error) {
    dialog.showErrorBox("Could not open the workspace", `${folder}: ${(error as Error).message}`);
  }
}

export function buildMenu(getWindow: () => BrowserWindow | null, actions: MenuActions): Menu {
  const isMac = process.platform === "darwin";
  const template: MenuItemConstructorOptions[] = [
    ...(isMac ? [{ role: "appMenu" as const }] : []),
    {
      label: "File",
      submenu: [
        {
          label: "Open Workspace Folder…",
          accelerator: "CmdOrCtrl+O",
          click: () => void chooseWorkspace(getWindow(), actions),
        },
        { type: "separator" },
        isMac ? { role: "close" } : { role: "quit" },
      ],
    },
    { role: "editMenu" },
    {
      label: "View",
      submenu: [
        { role: "reload" },
        { role: "toggleDevTools" },
        { type: "separator" },
        { role: "resetZoom" },
        { role: "zoomIn" },
        { role: "zoomOut" },
        { type: "separator" },
        { role: "togglefullscreen" },
      ],
    },
    {
      role: "help",
      submenu: [
        { label: "Open Data Folder", click: () => void shell.openPath(actions.dataHome) },
        { label: "Open Logs Folder", click: () => void shell.openPath(actions.logsDir) },
        {
          label: "About Galley",
          click: () =>
            void dialog.showMessageBox({
              type: "info",
              title: "About Galley",
              message: `Galley ${app.getVersion()}`,
              detail: `A workbench for LLM training and inference recipes.\nData: ${actions.dataHome}`,
            }),
        },
      ],
    },
  ];
  return Menu.buildFromTemplate(template);
}
