// File:line references as links that open the editor at that line.
import type { ReactNode } from "react";

import { splitLocations } from "../lib/locations";
import { openLocation } from "./open-location";

interface LinkProps {
  file: string;
  line: number;
  recipePath: string | null;
  children?: ReactNode;
}

export function LocationLink({ file, line, recipePath, children }: LinkProps) {
  return (
    <a
      href="#"
      className="location-link"
      data-testid="error-location"
      data-file={file}
      data-line={line}
      onClick={(event) => {
        event.preventDefault();
        openLocation(file, line, recipePath);
      }}
    >
      {children ?? `${file}:${line}`}
    </a>
  );
}

/** Text with every file:line it mentions (runner error lines, traceback frames) linked. */
export function LocatedText({ text, recipePath }: { text: string; recipePath: string | null }) {
  return (
    <>
      {splitLocations(text).map((part, index) =>
        part.location ? (
          <LocationLink key={index} file={part.location.file} line={part.location.line} recipePath={recipePath}>
            {part.text}
          </LocationLink>
        ) : (
          <span key={index}>{part.text}</span>
        ),
      )}
    </>
  );
}
