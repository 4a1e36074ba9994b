"""pgmre.encoders"""
