FROM python:3.11-slim
WORKDIR /srv
ENV PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8000
# WeasyPrint (PDF reports) needs Pango, HarfBuzz and fonts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
       libharfbuzz-subset0 libfontconfig1 fonts-dejavu-core fonts-droid-fallback \
       fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY workshop_templates ./workshop_templates
COPY static ./static
RUN pip install --no-cache-dir -e . && useradd --create-home appuser && mkdir -p data && chown appuser data
USER appuser
EXPOSE 8000
CMD ["python", "-m", "app", "serve"]
