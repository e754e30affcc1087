import DriveFolderUploadIcon from '@mui/icons-material/DriveFolderUpload';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import Typography from '@mui/material/Typography';
import { useEffect, useRef, useState, type DragEvent } from 'react';
import {
  entriesOfDrop,
  folderFromEntries,
  folderFromFileList,
  type PickedFolder,
} from '../workspace/collect';

export interface FolderDropZoneProps {
  /** A folder picked or dropped, `.git` and ignored files already left out. */
  onFolder: (folder: PickedFolder) => void;
  /** Reading the folder failed. */
  onError: (message: string) => void;
  error?: boolean;
  /** While a submission runs: no new folder. */
  disabled?: boolean;
}

/** A drop target for one folder, with a "choose folder" button over a `webkitdirectory` input. */
export function FolderDropZone(props: FolderDropZoneProps) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const [reading, setReading] = useState(false);

  // React has no prop for it: set the DOM property directly.
  useEffect(() => {
    if (input.current !== null) input.current.webkitdirectory = true;
  }, []);

  const take = (read: Promise<PickedFolder | undefined>) => {
    setReading(true);
    read.then(
      (folder) => {
        setReading(false);
        if (folder !== undefined) props.onFolder(folder);
      },
      (err: unknown) => {
        setReading(false);
        props.onError(`cannot read the folder: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    if (props.disabled) return;
    // Entries must be taken during the event; they are walked afterwards.
    take(folderFromEntries(entriesOfDrop(e.dataTransfer.items)));
  };

  return (
    <Box
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
      data-testid="folder-drop"
      sx={{
        border: 2,
        borderStyle: 'dashed',
        borderColor: props.error ? 'error.main' : over ? 'primary.main' : 'divider',
        bgcolor: over ? 'action.hover' : 'transparent',
        borderRadius: 2,
        p: { xs: 2, sm: 3 },
        textAlign: 'center',
        transition: 'background-color 120ms, border-color 120ms',
      }}
    >
      <DriveFolderUploadIcon color={props.error ? 'error' : 'action'} sx={{ fontSize: 36 }} />
      <Typography sx={{ mb: 1 }}>{reading ? 'Reading the folder…' : 'Drop your project folder here'}</Typography>
      <Button variant="outlined" disabled={reading || props.disabled} onClick={() => input.current?.click()}>
        Choose folder
      </Button>
      <input
        ref={input}
        type="file"
        multiple
        hidden
        aria-label="Workspace folder"
        data-testid="folder-input"
        onChange={(e) => {
          take(folderFromFileList(e.target.files ?? []));
          // Picking the same folder again must fire change again.
          e.target.value = '';
        }}
      />
    </Box>
  );
}
