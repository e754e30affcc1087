// A picked or dropped folder as a list of workspace files.
//
// `<input type=file webkitdirectory>` gives every file below the folder with
// `webkitRelativePath` = `folder/sub/file`; a drop gives entries walked with
// the File and Directory Entries API. Either way the folder itself is the
// root (its own name is not part of the paths), `.git` is skipped and the
// top-level `.gitignore` and `.ignore` apply (see ./ignore.ts for the subset).

import { isIgnored, parseIgnore, type IgnoreRules } from './ignore';
import type { WorkspaceFile } from './tree';

export interface PickedFolder {
  /** The folder's own name, for display. */
  name: string;
  /** The files that go into the workspace. */
  files: WorkspaceFile[];
  /** Files left out by `.git` or the ignore files. */
  ignored: number;
}

const IGNORE_FILES = ['.gitignore', '.ignore'];

/** A blob as UTF-8 text (FileReader where Blob.text is missing, as in jsdom). */
function blobText(blob: Blob): Promise<string> {
  if (typeof blob.text === 'function') return blob.text();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result ?? ''));
    reader.onerror = () => reject(reader.error ?? new Error('cannot read an ignore file'));
    reader.readAsText(blob);
  });
}

/** Applies `.git` skipping and the top-level ignore files to raw paths. */
export async function filterFolder(name: string, all: readonly WorkspaceFile[]): Promise<PickedFolder> {
  let rules: IgnoreRules = [];
  for (const ignoreFile of IGNORE_FILES) {
    const f = all.find((x) => x.path === ignoreFile);
    if (f !== undefined) rules = [...rules, ...parseIgnore(await blobText(f.blob))];
  }
  const files = all.filter((f) => !isIgnored(rules, f.path));
  return { name, files, ignored: all.length - files.length };
}

/** Files from a `webkitdirectory` input: strips the folder's name from each path. */
export async function folderFromFileList(list: Iterable<File>): Promise<PickedFolder | undefined> {
  const files = [...list];
  if (files.length === 0) return undefined;
  const rel = (f: File) => (f.webkitRelativePath !== '' ? f.webkitRelativePath : f.name);
  const first = rel(files[0]!);
  const name = first.includes('/') ? first.slice(0, first.indexOf('/')) : '';
  const prefix = name === '' ? '' : `${name}/`;
  return filterFolder(
    name,
    files.map((f) => {
      const p = rel(f);
      return { path: p.startsWith(prefix) ? p.slice(prefix.length) : p, blob: f };
    }),
  );
}

function readAllEntries(dir: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = dir.createReader();
  const all: FileSystemEntry[] = [];
  return new Promise((resolve, reject) => {
    // readEntries answers in batches (100 in Chromium) until an empty one.
    const next = () =>
      reader.readEntries((batch) => {
        if (batch.length === 0) resolve(all);
        else {
          all.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

function fileOf(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function walk(entry: FileSystemEntry, path: string, out: WorkspaceFile[]): Promise<void> {
  // `.git` is never uploaded: do not even read it.
  if (entry.name === '.git') return;
  if (entry.isFile) {
    out.push({ path, blob: await fileOf(entry as FileSystemFileEntry) });
  } else if (entry.isDirectory) {
    for (const child of await readAllEntries(entry as FileSystemDirectoryEntry)) {
      await walk(child, path === '' ? child.name : `${path}/${child.name}`, out);
    }
  }
}

/**
 * The entries of a drop, taken synchronously (the list is only valid during
 * the drop event); walk them afterwards with `folderFromEntries`.
 */
export function entriesOfDrop(items: DataTransferItemList): FileSystemEntry[] {
  const entries: FileSystemEntry[] = [];
  for (const item of items) {
    const e = item.kind === 'file' ? item.webkitGetAsEntry() : null;
    if (e !== null) entries.push(e);
  }
  return entries;
}

/** One dropped folder is the root; several dropped items are the root's content. */
export async function folderFromEntries(entries: readonly FileSystemEntry[]): Promise<PickedFolder | undefined> {
  if (entries.length === 0) return undefined;
  const files: WorkspaceFile[] = [];
  const only = entries[0]!;
  if (entries.length === 1 && only.isDirectory) {
    await walk(only, '', files);
    return filterFolder(only.name, files);
  }
  for (const e of entries) await walk(e, e.name, files);
  return filterFolder('', files);
}
