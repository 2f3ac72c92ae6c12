-- Which handler takes a file, by extension; the seed rows are the file-type families the bridge supports.
CREATE TABLE protocol_handlers (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    handler_type    text        NOT NULL UNIQUE CHECK (handler_type <> ''),
    -- Lowercase, without the leading dot, so that a lookup needs no normalising on the database side.
    file_extensions text[]      NOT NULL CHECK (cardinality(file_extensions) > 0),
    handler_config  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    is_active       boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Finding the handler of an extension: WHERE file_extensions @> ARRAY['png'].
CREATE INDEX protocol_handlers_file_extensions_gin ON protocol_handlers USING gin (file_extensions);

INSERT INTO protocol_handlers (handler_type, file_extensions, handler_config) VALUES
    ('image', ARRAY['jpg', 'jpeg', 'png', 'gif', 'bmp', 'webp'],
     '{"family": "images", "mime_types": ["image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"]}'),
    ('document', ARRAY['pdf', 'doc', 'docx', 'txt', 'md'],
     '{"family": "documents", "mime_types": ["application/pdf", "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "text/plain", "text/markdown"]}'),
    ('audio', ARRAY['mp3', 'wav', 'flac', 'aac', 'ogg'],
     '{"family": "audio", "mime_types": ["audio/mpeg", "audio/wav", "audio/flac", "audio/aac", "audio/ogg"]}'),
    ('video', ARRAY['mp4', 'avi', 'mkv', 'mov', 'webm'],
     '{"family": "video", "mime_types": ["video/mp4", "video/x-msvideo", "video/x-matroska", "video/quicktime", "video/webm"]}'),
    ('archive', ARRAY['zip', 'tar', 'gz', 'rar', '7z'],
     '{"family": "archives", "mime_types": ["application/zip", "application/x-tar", "application/gzip", "application/vnd.rar", "application/x-7z-compressed"]}');
