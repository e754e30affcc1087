import UploadFileIcon from '@mui/icons-material/UploadFile';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import Typography from '@mui/material/Typography';
import { useRef, useState, type DragEvent } from 'react';

export interface FileDropZoneProps {
  /** Files picked or dropped (several at once). */
  onFiles: (files: File[]) => void;
  error?: boolean;
}

/** A drop target with a "choose files" button over a hidden multi-file input. */
export function FileDropZone(props: FileDropZoneProps) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    const files = [...e.dataTransfer.files];
    if (files.length > 0) props.onFiles(files);
  };
  return (
    <Box
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
      data-testid="file-drop"
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
      <UploadFileIcon color={props.error ? 'error' : 'action'} sx={{ fontSize: 36 }} />
      <Typography sx={{ mb: 1 }}>Drop test files here</Typography>
      <Button variant="outlined" onClick={() => input.current?.click()}>
        Choose files
      </Button>
      <input
        ref={input}
        type="file"
        multiple
        hidden
        aria-label="Test files"
        data-testid="file-input"
        onChange={(e) => {
          const files = [...(e.target.files ?? [])];
          if (files.length > 0) props.onFiles(files);
          // Picking the same file again must fire change again.
          e.target.value = '';
        }}
      />
    </Box>
  );
}
